CREATE OR REPLACE FUNCTION pgjobs.doctor(p_target regclass DEFAULT NULL)
RETURNS TABLE (check_name text, status text, target text, detail text, fix text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- Health checks of this database's pgjobs installation, one row per finding:
-- status 'ok', 'warn' (works, but degraded or will degrade) or 'fail'
-- (broken: jobs of a target cannot run well); every finding that is not ok
-- carries in `fix` the exact SQL (or shell command) that fixes it.
--   pg_cron.*          installed, preloaded, serving this database, pgjobs
--                      scheduled; stops at the first problem (later steps
--                      cannot be judged). When pg_cron cannot drive the
--                      engine but a `pgjobs run` session is connected to this
--                      database, the row is ok: that session drives it.
--   pg_cron.retention  a scheduled prune whose retention is under the floor
--                      pgjobs.schedule takes (installed before it had one).
--   target.*           per registered target (only p_target when given):
--                      table exists, columns exist, (scope, key) btree,
--                      btree_gin (scope, document) index, autovacuum scale
--                      factor, dead tuples.
--   jobs.*             running jobs with an expired lease, running jobs
--                      without a heartbeat for over half their lease (and a
--                      minute) but a lease still valid, jobs held by throttling (and why), jobs due
--                      for over 15 minutes but still queued (only p_target's).
--   throttle.visibility  pgjobs' owner can see replica lag and autovacuum
--                      (pg_monitor).
--   workers.listening  queued exports/imports with no `pgjobs worker`
--                      connected (application_name 'pgjobs worker').
--   pg_cron.history    pgjobs' rows of cron.job_run_details.
--   storage.deletions  objects of pruned exports not deleted after a day.
--   clients.kept_bytes a client (not an administrator) keeping more than 80%
--                      of max_item_bytes_per_client (without p_target only).
--   engine.ownership   objects of schema pgjobs owned by a role whose rights
--                      the schema's owner lacks: `pgjobs migrate` refuses
--                      them (without p_target only).
-- Read-only; locks nothing beyond catalog and table reads. Raises 22023 when
-- p_target is given but not registered.
-- Each group of checks is a function of its own (pgjobs._doctor_*); this
-- one runs them in order and hands them what they share: pgjobs' cron jobs
-- here, the prune job among them (its command is the fix of a lapsed lease
-- and of an untrimmed history, its retention what the history is judged
-- by), and the `pgjobs run --loop` command suggested where nothing runs the
-- engine.
DECLARE
    v_jobs      jsonb := pgjobs._doctor_cron_jobs();
    v_prune_sql text := 'SELECT pgjobs.prune();';
    v_retention interval := interval '24 hours';
    v_loop_fix  constant text := 'pgjobs run --loop   # with PGJOBS_DSN pointing at database ';
    v_reg       pgjobs.target_registry;
BEGIN
    IF p_target IS NOT NULL THEN
        BEGIN
            PERFORM pgjobs._target(p_target);  -- 22023 with the register_target hint
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;  -- untrusted: reported below (target.trusted)
        WHEN invalid_parameter_value OR object_not_in_prerequisite_state THEN
            -- Registered, but changed since so that register_target would
            -- refuse it now: reported below (target.registration).
            IF NOT EXISTS (SELECT 1 FROM pgjobs.target_registry r
                            WHERE r.target = p_target) THEN
                RAISE;
            END IF;
        END;
    END IF;
    IF (v_jobs #>> '{pgjobs.prune,command}') ~ '^SELECT pgjobs\.prune\(''[^'']*''\)$' THEN
        v_prune_sql := (v_jobs #>> '{pgjobs.prune,command}') || ';';
        v_retention := substring(v_jobs #>> '{pgjobs.prune,command}'
                                 FROM '''([^'']*)''')::interval;
    END IF;

    RETURN QUERY SELECT * FROM pgjobs._doctor_pg_cron(v_jobs, v_loop_fix);
    -- A prune scheduled before pgjobs.schedule had its floor (an upgrade
    -- keeps it running as installed): pg_cron takes every job finished
    -- longer ago than it, each minute, with the files of their exports.
    IF v_jobs ? 'pgjobs.prune' AND v_retention < pgjobs._retention_floor() THEN
        check_name := 'pg_cron.retention';
        status := 'warn';
        target := NULL;
        detail := format('pg_cron prunes every minute with a retention of %s, under the %s '
                         'pgjobs.schedule now takes: finished jobs, and the files of exports '
                         'handed to their users, are deleted that soon', v_retention,
                         pgjobs._retention_floor());
        fix := 'SELECT pgjobs.schedule(''{"retention": "24 hours"}'');  -- with your '
               'runners and run_every options, if any (pgjobs schedule --retention 24h)';
        RETURN NEXT;
    END IF;
    RETURN QUERY SELECT * FROM pgjobs._doctor_engine_owner();
    FOR v_reg IN
        SELECT r.* FROM pgjobs.target_registry r
         WHERE p_target IS NULL OR r.target = p_target
         ORDER BY r.target::text
    LOOP
        RETURN QUERY SELECT * FROM pgjobs._doctor_target(v_reg);
    END LOOP;
    RETURN QUERY SELECT * FROM pgjobs._doctor_jobs(p_target, v_prune_sql);
    RETURN QUERY SELECT * FROM pgjobs._doctor_throttle_visibility();
    RETURN QUERY SELECT * FROM pgjobs._doctor_queue(p_target, v_loop_fix);
    RETURN QUERY SELECT * FROM pgjobs._doctor_cron_history(v_retention, v_prune_sql);
    RETURN QUERY SELECT * FROM pgjobs._doctor_storage();
    IF p_target IS NULL THEN  -- of clients, not of a target
        RETURN QUERY SELECT * FROM pgjobs._doctor_clients();
        -- Of the installation, not of a target; after the checks of the
        -- release before it, which reported it nowhere.
        RETURN QUERY SELECT * FROM pgjobs._doctor_ownership();
    END IF;
END
$function$;

COMMENT ON FUNCTION pgjobs.doctor(regclass) IS
'Health checks, one row per finding (check_name, status ok | warn | fail, target, detail, fix): '
'pg_cron (installed, preloaded, serving this database, pgjobs scheduled, run history size; '
'ok when pg_cron runs pgjobs here from its own database with cron.schedule_in_database; '
'a scheduled prune retention under the hour pgjobs.schedule takes), '
'each registered target (or only p_target): table and columns exist, the (scope, key) btree '
'index, a btree_gin (scope, document jsonb_path_ops) index for document targets, autovacuum '
'scale factor, dead tuples; running jobs with expired leases or no heartbeat for over half '
'their lease (and a minute); '
'jobs held by throttling and why; jobs due for over 15 minutes still queued; queued exports or '
'imports with no `pgjobs worker` connected; whether pgjobs'' owner sees the throttling signals '
'(pg_monitor); '
'storage deletions pending over a day; clients keeping more than 80% of '
'max_item_bytes_per_client and objects of schema pgjobs owned by a role whose rights its owner '
'lacks, which pgjobs migrate refuses (both without a target). Every finding that is not ok carries in fix the exact '
'SQL (or command) that fixes it. Read-only. For admins (`pgjobs doctor`).';
