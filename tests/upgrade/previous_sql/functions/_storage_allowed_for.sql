CREATE OR REPLACE FUNCTION pgjobs._storage_allowed_for(p_uri text, p_scope text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- Whether p_uri (a prefix or an object) lies under what a prefix of
-- pgjobs.storage_allow allows for a job of scope p_scope (its canonical
-- text, as pgjobs.jobs.scope holds it; NULL: no scope, so only prefixes
-- without `{scope}` count): equal to it or below it on a path-segment
-- boundary (s3://b/exp allows s3://b/exp/x, never s3://b/exports nor
-- s3://b2/exp). A per-tenant prefix (s3://b/t/{scope}) allows only the
-- folder of p_scope (pgjobs._storage_prefix_for). A URI
-- pgjobs._normalize_uri refuses is not allowed. The rule is
-- pgjobs._storage_admitting's, which _storage_root_for shares. The submit functions and
-- the worker (at run time, with the job's scope) both ask here. Locks
-- nothing.
BEGIN
    RETURN EXISTS (SELECT 1 FROM pgjobs._storage_admitting(p_uri, p_scope));
END
$function$;
