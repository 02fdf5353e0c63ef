CREATE OR REPLACE FUNCTION pgjobs.allow_storage(p_prefix text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- Adds p_prefix, normalised (pgjobs._normalize_uri: 22023 if refused), to
-- the storage allow-list: clients may then name it, or anything below it on
-- a path-segment boundary, as an export destination. Administrators only
-- (not granted to pgjobs_client). Idempotent. Locks the allow-list row.
BEGIN
    INSERT INTO pgjobs.storage_allow (prefix)
    VALUES (pgjobs._normalize_uri(p_prefix))
    ON CONFLICT (prefix) DO NOTHING;
END
$function$;

COMMENT ON FUNCTION pgjobs.allow_storage(text) IS
'Administrators only: allow clients to name this storage prefix (or anything below it, on a '
'path-segment boundary) as an export destination. The prefix is normalised; dot segments, '
'%-escapes and relative file paths are refused (22023). Idempotent.';
