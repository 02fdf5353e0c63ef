CREATE OR REPLACE FUNCTION pgjobs._storage_admitting(p_uri text, p_scope text)
RETURNS TABLE (prefix text, expanded text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The prefixes of pgjobs.storage_allow that admit p_uri (a prefix or an
-- object) for a job of scope p_scope, each as written (`prefix`) and as it
-- reads for that scope (`expanded`, pgjobs._storage_prefix_for: a
-- per-tenant prefix s3://b/t/{scope} is the folder of p_scope only; with
-- a NULL scope only prefixes without `{scope}` count). A prefix admits a
-- URI equal to it or below it on a path-segment boundary (s3://b/exp
-- admits s3://b/exp/x, never s3://b/exports nor s3://b2/exp). A URI
-- pgjobs._normalize_uri refuses is admitted by none. The one rule behind
-- pgjobs._storage_allowed_for (whether) and pgjobs._storage_root_for
-- (under which root). Locks nothing.
DECLARE
    v_uri text;
BEGIN
    BEGIN
        v_uri := pgjobs._normalize_uri(p_uri);
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN;
    END;
    RETURN QUERY
        SELECT a.prefix, p.prefix
          FROM pgjobs.storage_allow a
         CROSS JOIN LATERAL pgjobs._storage_prefix_for(a.prefix, p_scope) p(prefix)
         WHERE p.prefix = v_uri
            OR left(v_uri, length(p.prefix) + 1) = p.prefix || '/';
END
$function$;
