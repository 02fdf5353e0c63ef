CREATE OR REPLACE FUNCTION pgjobs._submitter_name(p_name name, p_oid oid)
RETURNS name
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The name a job's submitter goes by now, for the checks of its rights
-- (pgjobs._submitter_problem, pgjobs._import_insert_sql) and every message
-- that names it (pgjobs._requeue_problem's hint, the pause expiry of
-- pgjobs._expire_client_pauses, pgjobs.import_batch's client ceiling): the
-- current name of the role with oid p_oid (pgjobs.jobs.submitted_by_oid),
-- so a submitter renamed since the submit (ALTER ROLE ... RENAME TO) keeps
-- running its jobs with its own rights, and is told of under the name an
-- administrator finds in pg_roles. p_name (submitted_by, the name at
-- submit) when the job has no oid (its submitter was gone at migration
-- 0180) or that role is gone: pgjobs._submitter_identity_problem then
-- says so (a role created again under it is not the submitter; no role of
-- that name does not exist). One syscache lookup. Locks nothing.
BEGIN
    IF p_oid IS NULL THEN
        RETURN p_name;
    END IF;
    RETURN coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = p_oid), p_name);
END
$$;
