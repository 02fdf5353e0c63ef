CREATE OR REPLACE FUNCTION pgjobs._setting_hidden(p_name text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether the caller may not read setting p_name: a superuser-only setting
-- (shared_preload_libraries, cron.database_name) is hidden from a role
-- without pg_read_all_settings, and current_setting raises 42501 for it
-- even with missing_ok. A pgjobs_admin member need not be a superuser, so
-- `pgjobs doctor` and `pgjobs schedule` ask here first and say what they
-- could not read instead of failing whole. An unknown setting is not hidden.
-- Locks nothing.
BEGIN
    PERFORM current_setting(p_name, true);
    RETURN false;
EXCEPTION WHEN insufficient_privilege THEN
    RETURN true;
END
$$;
