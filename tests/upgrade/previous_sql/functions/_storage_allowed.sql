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
-- Whether p_uri (a prefix or an object) lies under a prefix of
-- pgjobs.storage_allow: equal to it or below it on a path-segment boundary
-- (s3://b/exp allows s3://b/exp/x, never s3://b/exports nor s3://b2/exp).
-- A URI pgjobs._normalize_uri refuses is not allowed. The submit functions
-- and the worker (at run time) both ask here. Locks nothing.
DECLARE
    v_uri text;
BEGIN
    BEGIN
        v_uri := pgjobs._normalize_uri(p_uri);
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN false;
    END;
    RETURN EXISTS (
        SELECT 1 FROM pgjobs.storage_allow a
         WHERE a.prefix = v_uri
            OR left(v_uri, length(a.prefix) + 1) = a.prefix || '/');
END
$function$;
