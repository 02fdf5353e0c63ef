CREATE OR REPLACE FUNCTION pgjobs._cron_version()
RETURNS integer[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- pg_cron's version in this database as {major, minor}, installing the
-- extension when this database is pg_cron's (cron.database_name) and the
-- library is preloaded. Raises 55000 with a hint when pg_cron cannot be
-- used here; `pgjobs run --loop` is the alternative.
DECLARE
    v_version text;
    v_db text;
BEGIN
    SELECT extversion INTO v_version FROM pg_extension WHERE extname = 'pg_cron';
    IF v_version IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron') THEN
            RAISE EXCEPTION 'pg_cron is not installed on this server' USING ERRCODE = '55000',
                HINT = 'Install it (Debian: apt-get install postgresql-15-cron), or drive the '
                       'engine without it: pgjobs run --loop';
        END IF;
        -- Read only here: once pg_cron is created in this database, a
        -- pgjobs_admin member without pg_read_all_settings schedules too.
        IF pgjobs._setting_hidden('cron.database_name') THEN
            RAISE EXCEPTION '% may not read cron.database_name: cannot tell whether pg_cron '
                            'serves database %', current_user, current_database()
                USING ERRCODE = '42501',
                HINT = format('A superuser runs SELECT pgjobs.schedule(); here once (later '
                              'calls find pg_cron created), or GRANT pg_read_all_settings TO '
                              '%I; or drive the engine without pg_cron: pgjobs run --loop',
                              current_user);
        END IF;
        v_db := current_setting('cron.database_name', true);
        IF v_db IS NULL THEN
            RAISE EXCEPTION 'pg_cron is installed but not loaded' USING ERRCODE = '55000',
                HINT = 'Add pg_cron to shared_preload_libraries and restart, or drive the '
                       'engine without it: pgjobs run --loop';
        END IF;
        IF v_db <> current_database() THEN
            RAISE EXCEPTION 'pg_cron runs in database %, not in %', v_db, current_database()
                USING ERRCODE = '55000',
                HINT = format('Set cron.database_name = %L and restart, or drive the engine '
                              'without pg_cron: pgjobs run --loop', current_database());
        END IF;
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_cron;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'pg_cron is not created in database %', current_database()
                USING ERRCODE = '55000',
                HINT = 'A superuser runs CREATE EXTENSION pg_cron; or drive the engine without '
                       'it: pgjobs run --loop';
        END;
        SELECT extversion INTO v_version FROM pg_extension WHERE extname = 'pg_cron';
    END IF;
    RETURN ARRAY[split_part(split_part(v_version, '-', 1), '.', 1)::integer,
                 coalesce(nullif(split_part(split_part(v_version, '-', 1), '.', 2), ''),
                          '0')::integer];
END
$$;
