CREATE OR REPLACE FUNCTION pgjobs.schedule(p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Installs (or updates) pgjobs' pg_cron jobs in the current database:
--   pgjobs.run    CALL pgjobs.run(budget): works delete/backfill pages;
--   pgjobs.run.2 .. pgjobs.run.N  the same, with option runners N: pg_cron
--                 runs them side by side, each its own session; claim's
--                 SKIP LOCKED and the gate keep them off the same job and
--                 off one scope's writers, so different scopes proceed in
--                 parallel;
--   pgjobs.prune  SELECT pgjobs.prune(retention): leases, retention, history.
-- pg_cron 1.5+ takes second schedules: run every `run_every` seconds
-- (default 10) with a budget just under it; 1.4 ticks each minute, so run
-- gets a 50 second budget. Idempotent: everything pgjobs scheduled before
-- is removed first (pgjobs.unschedule), under a lock, so runners N may go
-- up or down.
-- Without pg_cron: 55000 with a hint naming `pgjobs run --loop`.
-- Options: run_every (int seconds, 1..59, pg_cron 1.5+), runners (int,
-- 1..16, default 1), retention (interval, 1 hour .. 1000 years, default
-- '24 hours'). Returns what
-- was scheduled.
DECLARE
    v_version integer[];
    v_key text;
    v_run_every integer := 10;
    v_runners integer := 1;
    v_jobs jsonb := '[]'::jsonb;
    v_name text;
    v_retention interval := interval '24 hours';
    v_run_schedule text;
    v_budget interval;
    v_run_command text;
    v_prune_command text;
BEGIN
    IF p_options IS NULL OR jsonb_typeof(p_options) <> 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for the defaults.';
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(p_options) LOOP
        IF v_key NOT IN ('run_every', 'runners', 'retention') THEN
            RAISE EXCEPTION 'unknown schedule option "%"', v_key USING ERRCODE = '22023',
                HINT = 'Valid options: run_every (seconds, 1 to 59), runners (1 to 16), '
                       'retention (interval, 1 hour to 1000 years), e.g. '
                       '{"runners": 2, "retention": "24 hours"}.';
        END IF;
    END LOOP;
    IF p_options ? 'run_every' THEN
        v_run_every := pgjobs._option_int('run_every', p_options -> 'run_every', 1, 59);
    END IF;
    IF p_options ? 'runners' THEN
        v_runners := pgjobs._option_int('runners', p_options -> 'runners', 1, 16);
    END IF;
    IF p_options ? 'retention' THEN
        BEGIN
            v_retention := (p_options ->> 'retention')::interval;
        EXCEPTION WHEN OTHERS THEN
            v_retention := NULL;
        END;
        -- At most 1000 years, as pgjobs.prune takes: a cron entry with a
        -- longer one would fail at every run. At least an hour
        -- (pgjobs._retention_floor): pg_cron prunes every minute, and a
        -- shorter retention takes an export's files from its user before
        -- they are fetched.
        IF jsonb_typeof(p_options -> 'retention') <> 'string' OR v_retention IS NULL
           OR v_retention < pgjobs._retention_floor() OR v_retention > interval '1000 years' THEN
            RAISE EXCEPTION 'option "retention" must be an interval from 1 hour to 1000 years, '
                            'not %', p_options -> 'retention'
                USING ERRCODE = '22023',
                HINT = 'For example {"retention": "24 hours"} (the default). pg_cron prunes '
                       'every minute: a retention under an hour would delete finished jobs, '
                       'and the files of exports just handed to their users, before anyone '
                       'fetched them. To prune sooner once: pgjobs prune --retention 10m '
                       '(SELECT pgjobs.prune(''10 minutes'');).';
        END IF;
    END IF;

    v_version := pgjobs._cron_version();
    PERFORM pgjobs._advisory_xact_lock(hashtext('pgjobs.schedule'), 'pgjobs.schedule calls');

    IF v_version >= ARRAY[1, 5] THEN
        v_run_schedule := format('%s seconds', v_run_every);
        v_budget := make_interval(secs => greatest(v_run_every - 1, 1));
    ELSE
        v_run_schedule := '* * * * *';
        v_budget := interval '50 seconds';
    END IF;
    v_run_command := format('CALL pgjobs.run(%L)', v_budget);
    v_prune_command := format('SELECT pgjobs.prune(%L)', v_retention);

    PERFORM pgjobs.unschedule();
    FOR i IN 1 .. v_runners LOOP
        -- The first runner keeps the name it always had.
        v_name := CASE WHEN i = 1 THEN 'pgjobs.run' ELSE format('pgjobs.run.%s', i) END;
        -- format(): the cron schema exists only where pg_cron does.
        EXECUTE format('SELECT %I.schedule($1, $2, $3)', 'cron')
            USING v_name, v_run_schedule, v_run_command;
        v_jobs := v_jobs || jsonb_build_array(jsonb_build_object(
            'name', v_name, 'schedule', v_run_schedule, 'command', v_run_command));
    END LOOP;
    EXECUTE format('SELECT %I.schedule($1, $2, $3)', 'cron')
        USING 'pgjobs.prune', '* * * * *', v_prune_command;

    RETURN jsonb_build_object(
        'pg_cron', array_to_string(v_version, '.'),
        'runners', v_runners,
        'jobs', v_jobs || jsonb_build_array(
            jsonb_build_object('name', 'pgjobs.prune', 'schedule', '* * * * *',
                               'command', v_prune_command)));
END
$$;

COMMENT ON FUNCTION pgjobs.schedule(jsonb) IS
'Installs pg_cron jobs pgjobs.run (CALL pgjobs.run) and pgjobs.prune in the current database; '
'second schedules on pg_cron 1.5+, minute schedules on 1.4. Idempotent. Options: run_every '
'(seconds), runners (N runner entries pgjobs.run, pgjobs.run.2 .. side by side; default 1), '
'retention (interval, at least 1 hour, default 24 hours: pg_cron prunes every minute). Without pg_cron raises 55000; use `pgjobs run --loop`.';
