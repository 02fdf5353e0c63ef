CREATE OR REPLACE FUNCTION pgjobs._is_submitter(p_role name, p_name name, p_oid oid)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether role p_role submitted the job whose pgjobs.jobs.submitted_by is
-- p_name and submitted_by_oid p_oid: the one rule for "is this the
-- caller's own job", asked by every function that grants the submitter a
-- right on its job (pgjobs._controlled_job: cancel, pause, resume, retry,
-- add_items; pgjobs._keep_client_bytes). By oid where the job has one, so
-- a submitter renamed since (ALTER ROLE ... RENAME TO) keeps its jobs, and
-- a role created under a dropped submitter's name gets none of them; by
-- name only for a job made before migration 0033 (no oid), as before.
-- Policy jobs_client_read (migration 0163) and pgjobs._has_jobs_on spell
-- the same rule inline (a policy calls no pgjobs function). NULL role or
-- a role that does not exist: false. One syscache lookup (to_regrole).
-- Locks nothing.
BEGIN
    IF p_oid IS NULL THEN
        RETURN coalesce(p_role = p_name, false);
    END IF;
    RETURN coalesce(to_regrole(quote_ident(p_role))::oid = p_oid, false);
END
$$;
