CREATE OR REPLACE FUNCTION pgjobs._engine_seen(p_what text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Notes that pgjobs.run or pgjobs.prune (p_what: 'run' or 'prune') ran in
-- this database, when and under what kind of session: pgjobs.settings key
-- 'engine_seen.<p_what>' = {"at", "backend_type", "application_name"}
-- (pgjobs._engine_seen_notes reads them). pg_cron's catalog lives in one
-- database only: where it runs pgjobs from another one
-- (cron.schedule_in_database, the recipe of managed services), this note is
-- all pgjobs.doctor can see of it. One row per kind, so run and prune,
-- scheduled on the same minute, never contend: a row shared by both was
-- held by whichever came first, and the other skipped its note every
-- minute. Writes at most once per 5 seconds per kind, and never waits: a
-- runner that finds its row locked (another runner noting the same kind)
-- skips. Locks: that row, until the caller's transaction ends. Returns
-- whether it wrote the note.
DECLARE
    v_key     text;
    v_backend text;
    v_app     text;
BEGIN
    IF p_what IS NULL OR p_what NOT IN ('run', 'prune') THEN
        RAISE EXCEPTION 'pgjobs._engine_seen: unknown kind of run %', p_what
            USING ERRCODE = '22023', HINT = 'Pass ''run'' or ''prune''.';
    END IF;
    v_key := 'engine_seen.' || p_what;
    PERFORM FROM pgjobs.settings s
     WHERE s.key = v_key
       AND coalesce((s.value ->> 'at')::timestamptz, '-infinity')
           < now() - interval '5 seconds'
       FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        IF EXISTS (SELECT FROM pgjobs.settings s WHERE s.key = v_key) THEN
            RETURN false;  -- noted within 5 s, or being noted by another runner now
        END IF;
        INSERT INTO pgjobs.settings AS s (key, value)
        VALUES (v_key, '{}')
        ON CONFLICT (key) DO NOTHING;
        PERFORM FROM pgjobs.settings s WHERE s.key = v_key FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    SELECT a.backend_type, a.application_name INTO v_backend, v_app
      FROM pg_catalog.pg_stat_activity a
     WHERE a.pid = pg_catalog.pg_backend_pid();
    UPDATE pgjobs.settings s
       SET value = jsonb_build_object(
                       'at', now(), 'backend_type', v_backend,
                       'application_name', coalesce(nullif(v_app, ''),
                                                    current_setting('application_name'))),
           updated_at = now()
     WHERE s.key = v_key;
    RETURN true;
END
$$;
