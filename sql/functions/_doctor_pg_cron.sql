CREATE OR REPLACE FUNCTION pgjobs._doctor_pg_cron(p_jobs jsonb, p_loop_fix text)
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- pgjobs.doctor's pg_cron checks: installed, preloaded, serving this
-- database, pgjobs scheduled (p_jobs: pgjobs' cron jobs here, from
-- pgjobs._doctor_cron_jobs). Stops at the first problem (later steps cannot
-- be judged); when pg_cron cannot drive the engine but a `pgjobs run`
-- session is connected to this database, that row is ok: the session
-- drives it. Likewise when pg_cron runs pgjobs here from its own database
-- (cron.schedule_in_database, the managed-service recipe): its catalog is
-- not readable from here, so the evidence is what pgjobs.run and
-- pgjobs.prune note when they run (pgjobs._engine_seen): both run by a
-- pg_cron session within the last 3 minutes is ok; only one of them is a
-- warn naming the missing schedule. p_loop_fix: the `pgjobs run --loop`
-- command doctor suggests. Read-only.
DECLARE
    v_runners     integer;
    v_preload     text;
    v_cron_db     text;
    v_hidden      text;  -- the first setting this role may not read
    v_cron_ver    text;
    v_jobs        jsonb;
    v_seen        jsonb;
    v_cron_run    boolean;
    v_cron_prune  boolean;
BEGIN
    -- A pgjobs_admin member that is no superuser may not read these (42501
    -- from current_setting): doctor then says so instead of failing whole.
    IF pgjobs._setting_hidden('shared_preload_libraries') THEN
        v_hidden := 'shared_preload_libraries';
    ELSE
        v_preload := current_setting('shared_preload_libraries');
    END IF;
    IF pgjobs._setting_hidden('cron.database_name') THEN
        v_hidden := coalesce(v_hidden, 'cron.database_name');
    ELSE
        v_cron_db := current_setting('cron.database_name', true);
    END IF;
    SELECT count(*)::integer INTO v_runners
      FROM pg_catalog.pg_stat_activity a
     WHERE a.datname = current_database() AND a.application_name = 'pgjobs run'
       AND a.pid <> pg_catalog.pg_backend_pid()
       -- A name any client may take: only an engine role's session runs it.
       AND pgjobs._engine_runner(a.usename::text);

    check_name := NULL;
    target := NULL;
    fix := NULL;
    SELECT e.default_version INTO v_cron_ver
      FROM pg_catalog.pg_available_extensions e WHERE e.name = 'pg_cron';
    IF v_cron_ver IS NULL THEN
        check_name := 'pg_cron.installed';
        detail := 'pg_cron is not installed on this server: nothing runs delete/backfill '
                  'jobs or prune on its own';
        fix := p_loop_fix || current_database() || format(
            '  (or install pg_cron, e.g. apt-get install postgresql-%s-cron, then preload it)',
            current_setting('server_version_num')::integer / 10000);
    ELSE
        RETURN QUERY SELECT 'pg_cron.installed'::text, 'ok'::text, NULL::text,
            format('pg_cron %s is installed on this server', v_cron_ver), NULL::text;
        IF v_hidden IS NOT NULL THEN
            check_name := 'pg_cron.preloaded';
            detail := format('%s may not read %s (a superuser-only setting): cannot tell '
                             'whether pg_cron is loaded and serves this database',
                             current_user, v_hidden);
            fix := format('GRANT pg_read_all_settings TO %I;  -- as a superuser (or run '
                          'pgjobs doctor as a superuser)', current_user);
        ELSIF v_preload !~ '(^|,)\s*"?(\$libdir/)?pg_cron"?\s*(,|$)' THEN
            check_name := 'pg_cron.preloaded';
            detail := format('pg_cron is not in shared_preload_libraries (%L)', v_preload);
            fix := format('ALTER SYSTEM SET shared_preload_libraries = %L; '
                          'ALTER SYSTEM SET cron.database_name = %L; -- then restart '
                          'PostgreSQL and run: SELECT pgjobs.schedule();  (or, without '
                          'pg_cron: %s%s)',
                          CASE WHEN btrim(v_preload) = '' THEN 'pg_cron'
                               ELSE v_preload || ',pg_cron' END,
                          current_database(), p_loop_fix, current_database());
        ELSE
            RETURN QUERY SELECT 'pg_cron.preloaded'::text, 'ok'::text, NULL::text,
                'pg_cron is in shared_preload_libraries'::text, NULL::text;
            IF v_cron_db IS DISTINCT FROM current_database() THEN
                check_name := 'pg_cron.database';
                detail := format('pg_cron runs jobs only in database %s (cron.database_name), '
                                 'not in %s', coalesce(v_cron_db, 'postgres'),
                                 current_database());
                fix := p_loop_fix || current_database() || format(
                    '  (or ALTER SYSTEM SET cron.database_name = %L; then restart PostgreSQL '
                    'and run: SELECT pgjobs.schedule();)', current_database());
            ELSE
                RETURN QUERY SELECT 'pg_cron.database'::text, 'ok'::text, NULL::text,
                    format('pg_cron runs jobs in this database (%s)', v_cron_db), NULL::text;
                IF pgjobs._cron_relation('job') IS NULL THEN
                    check_name := 'pg_cron.scheduled';
                    detail := 'extension pg_cron is not created in this database';
                    fix := 'SELECT pgjobs.schedule();  -- creates the extension, schedules '
                           'pgjobs.run and pgjobs.prune';
                ELSE
                    v_jobs := coalesce(p_jobs, '{}');
                    IF NOT (v_jobs ? 'pgjobs.run' AND v_jobs ? 'pgjobs.prune')
                       OR NOT (v_jobs #>> '{pgjobs.run,active}')::boolean
                       OR NOT (v_jobs #>> '{pgjobs.prune,active}')::boolean THEN
                        check_name := 'pg_cron.scheduled';
                        detail := format('pgjobs is not (fully) scheduled in pg_cron: '
                                         'pgjobs.run %s, pgjobs.prune %s',
                                         CASE WHEN NOT v_jobs ? 'pgjobs.run' THEN 'missing'
                                              WHEN (v_jobs #>> '{pgjobs.run,active}')::boolean
                                              THEN 'active' ELSE 'inactive' END,
                                         CASE WHEN NOT v_jobs ? 'pgjobs.prune' THEN 'missing'
                                              WHEN (v_jobs #>> '{pgjobs.prune,active}')::boolean
                                              THEN 'active' ELSE 'inactive' END);
                        fix := 'SELECT pgjobs.schedule();';
                    ELSE
                        RETURN QUERY SELECT 'pg_cron.scheduled'::text, 'ok'::text, NULL::text,
                            format('pg_cron runs pgjobs.run (%s) and pgjobs.prune (%s)',
                                   v_jobs #>> '{pgjobs.run,schedule}',
                                   v_jobs #>> '{pgjobs.prune,schedule}'), NULL::text;
                    END IF;
                END IF;
            END IF;
        END IF;
    END IF;
    IF check_name IS NOT NULL THEN
        -- pgjobs.run / pgjobs.prune run here by pg_cron (from another database).
        v_seen := pgjobs._engine_seen_notes();
        SELECT coalesce(bool_or(k.ran) FILTER (WHERE k.what = 'run'), false),
               coalesce(bool_or(k.ran) FILTER (WHERE k.what = 'prune'), false)
          INTO v_cron_run, v_cron_prune
          FROM (SELECT w.what,
                       (v_seen #>> ARRAY[w.what, 'at'])::timestamptz > now() - interval '3 minutes'
                       AND 'pg_cron' IN (v_seen #>> ARRAY[w.what, 'backend_type'],
                                         v_seen #>> ARRAY[w.what, 'application_name']) AS ran
                  FROM unnest(ARRAY['run', 'prune']) AS w(what)) k
         -- Evidence only where pg_cron cannot schedule here: when it runs in this
         -- database, its catalog (cron.job) says what is scheduled now, and a run
         -- noted before an unschedule is not a schedule.
         WHERE check_name = 'pg_cron.database';
        IF v_runners > 0 THEN
            -- Not a problem: the engine is driven from outside.
            status := 'ok';
            detail := detail || format('; the engine is driven by %s connected `pgjobs run` '
                                       'session(s) instead', v_runners);
            fix := NULL;
        ELSIF v_cron_run AND v_cron_prune THEN
            status := 'ok';
            detail := detail || format(
                '; pg_cron runs pgjobs here from another database (cron.schedule_in_database): '
                'pgjobs.run last ran %s ago, pgjobs.prune %s ago',
                date_trunc('second', now() - (v_seen #>> '{run,at}')::timestamptz),
                date_trunc('second', now() - (v_seen #>> '{prune,at}')::timestamptz));
            fix := NULL;
        ELSIF v_cron_run OR v_cron_prune THEN
            status := 'warn';
            detail := detail || format(
                '; pg_cron runs %s here from another database but not %s',
                CASE WHEN v_cron_run THEN 'pgjobs.run' ELSE 'pgjobs.prune' END,
                CASE WHEN v_cron_run THEN 'pgjobs.prune' ELSE 'pgjobs.run' END);
            fix := format('-- in database %s (cron.database_name): SELECT '
                          'cron.schedule_in_database(%L, %L, %L, %L);',
                          coalesce(v_cron_db, 'postgres'),
                          CASE WHEN v_cron_run THEN 'pgjobs.prune' ELSE 'pgjobs.run' END,
                          '* * * * *',
                          CASE WHEN v_cron_run THEN 'SELECT pgjobs.prune()'
                               ELSE 'CALL pgjobs.run()' END,
                          current_database());
        ELSE
            status := 'warn';
        END IF;
        RETURN NEXT;
    END IF;
END
$function$;
