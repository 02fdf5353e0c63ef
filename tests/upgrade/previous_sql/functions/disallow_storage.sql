CREATE OR REPLACE FUNCTION pgjobs.disallow_storage(p_prefix text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- Removes p_prefix (compared in normal form) from the storage allow-list.
-- Jobs already submitted under it are refused by the worker when they run.
-- Administrators only. Removing a prefix that is not listed does nothing
-- (idempotent) but says so in a WARNING, and so does removing one that a
-- broader listed prefix still covers: an administrator who revokes
-- s3://b/tenants/acme (or mistypes s3://b/tenant) while s3://b/tenants is
-- listed would otherwise believe acme's access is gone. Errors: 22023 for
-- a URI pgjobs._normalize_uri refuses. Locks the allow-list row.
DECLARE
    v_prefix text := pgjobs._normalize_uri(p_prefix);
    v_still text;
BEGIN
    DELETE FROM pgjobs.storage_allow WHERE prefix = v_prefix;
    IF NOT FOUND THEN
        RAISE WARNING 'storage prefix % was not on the allow-list: nothing removed',
                      quote_literal(v_prefix)
            USING HINT = 'SELECT prefix FROM pgjobs.storage_allow lists the allowed prefixes; '
                         'remove one as it is listed.';
    END IF;
    SELECT string_agg(quote_literal(a.prefix), ', ' ORDER BY a.prefix) INTO v_still
      FROM pgjobs.storage_allow a
     WHERE v_prefix <> a.prefix
       AND pgjobs._storage_allowed_for(v_prefix, NULL)
       AND left(v_prefix, length(rtrim(a.prefix, '/')) + 1) = rtrim(a.prefix, '/') || '/';
    IF v_still IS NOT NULL THEN
        RAISE WARNING 'storage prefix % is still allowed: it lies under %',
                      quote_literal(v_prefix), v_still
            USING HINT = 'Remove the broader prefix too (and allow what should stay), or use '
                         'a per-tenant prefix such as ''s3://bucket/tenants/{scope}''.';
    END IF;
END
$function$;

COMMENT ON FUNCTION pgjobs.disallow_storage(text) IS
'Administrators only: remove a storage prefix from the allow-list (compared after '
'normalising). Queued and running exports under it are refused by the worker. A WARNING says '
'when nothing was removed, or when a broader allowed prefix still covers it.';
