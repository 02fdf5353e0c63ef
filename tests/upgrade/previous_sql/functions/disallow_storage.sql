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
-- Administrators only. Removing a prefix that is not listed does nothing.
BEGIN
    DELETE FROM pgjobs.storage_allow WHERE prefix = pgjobs._normalize_uri(p_prefix);
END
$function$;

COMMENT ON FUNCTION pgjobs.disallow_storage(text) IS
'Administrators only: remove a storage prefix from the allow-list (compared after '
'normalising). Queued and running exports under it are refused by the worker.';
