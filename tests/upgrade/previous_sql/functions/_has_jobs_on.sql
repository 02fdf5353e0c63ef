CREATE OR REPLACE FUNCTION pgjobs._has_jobs_on(p_role name, p_target regclass)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET enable_seqscan = off
AS $$
-- Whether p_role submitted a job (any status) on p_target, by the rule of
-- pgjobs._is_submitter: the very role by oid (a submitter renamed since
-- still has its jobs; a role created under a dropped submitter's name has
-- none of them); a job without an oid is no role's (migration 0180). One
-- probe of index jobs_submitter_target_idx (migration 0163), for
-- pgjobs._allowed_scope_keys_as.
-- enable_seqscan off: the cached generic plan of an EXISTS expects one of
-- thousands of rows early in a sequential scan, and reads the whole jobs
-- table when the role has none there (the answer this is mostly asked for).
-- Locks nothing.
DECLARE
    v_oid oid := to_regrole(quote_ident(p_role));
BEGIN
    RETURN EXISTS (SELECT 1 FROM pgjobs.jobs j
                    WHERE j.submitted_by_oid = v_oid AND j.target = p_target);
END
$$;
