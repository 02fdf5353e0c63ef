CREATE OR REPLACE FUNCTION pgjobs._storage_allowed(p_uri text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- Whether p_uri lies under a prefix of pgjobs.storage_allow that every
-- tenant shares (one without `{scope}`): pgjobs._storage_allowed_for
-- without a scope, which is what a job's checks use (submit and worker
-- pass the job's scope). Kept for a worker of an earlier release, which
-- then never reads or writes under a per-tenant prefix. Locks nothing.
BEGIN
    RETURN pgjobs._storage_allowed_for(p_uri, NULL);
END
$function$;
