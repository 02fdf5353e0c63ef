CREATE OR REPLACE FUNCTION pgjobs._storage_root_for(p_uri text, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The allow-list prefix that admits p_uri for a job of scope p_scope (the
-- longest, when several do; a per-tenant one resolved to the folder of
-- p_scope), in normal form; NULL when none does. The rule is
-- pgjobs._storage_allowed_for's. The worker asks it once per attempt for a
-- file:// URI: that prefix is the trusted root of the path, an
-- administrator wrote it, so a symbolic link at or above it is followed
-- and only a link below it (the part a client or the job's target and
-- scope name) is refused (poller/storage.py). Locks nothing.
DECLARE
    v_uri text;
BEGIN
    BEGIN
        v_uri := pgjobs._normalize_uri(p_uri);
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN NULL;
    END;
    RETURN (
        SELECT p.prefix
          FROM pgjobs.storage_allow a
         CROSS JOIN LATERAL pgjobs._storage_prefix_for(a.prefix, p_scope) p(prefix)
         WHERE p.prefix = v_uri
            OR left(v_uri, length(p.prefix) + 1) = p.prefix || '/'
         ORDER BY length(p.prefix) DESC
         LIMIT 1);
END
$function$;
