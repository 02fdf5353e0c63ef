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
--   target.*           per registered target (only p_target when given):
--                      table exists, columns exist, (scope, key) btree,
--                      btree_gin (scope, document) index, autovacuum scale
--                      factor, dead tuples.
--   jobs.*             running jobs with an expired lease, running jobs
--                      without a heartbeat for 15 minutes but a lease still
--                      valid, jobs held by throttling (and why), jobs due
--                      for over 15 minutes but still queued (only p_target's).
--   throttle.visibility  pgjobs' owner can see replica lag and autovacuum
--                      (pg_monitor).
--   workers.listening  queued exports/imports with no `pgjobs worker`
--                      connected (application_name 'pgjobs worker').
--   pg_cron.history    pgjobs' rows of cron.job_run_details.
--   storage.deletions  objects of pruned exports not deleted after a day.
-- Read-only; locks nothing beyond catalog and table reads. Raises 22023 when
-- p_target is given but not registered.
DECLARE
    v_runners     integer;
    v_preload     text := current_setting('shared_preload_libraries');
    v_cron_db     text := current_setting('cron.database_name', true);
    v_cron_ver    text;
    v_jobs        jsonb;
    v_prune_sql   text := 'SELECT pgjobs.prune();';
    v_retention   interval := interval '24 hours';
    v_loop_fix    constant text := 'pgjobs run --loop   # with PGJOBS_DSN pointing at database ';
    v_reg         pgjobs.target_registry;
    v_relkind     "char";
    v_nsp         name;
    v_rel         name;
    v_key_num     smallint;
    v_scope_num   smallint;
    v_doc_num     smallint;
    v_index       text;
    v_usable      boolean;
    v_name        text;
    v_leaves      text[];
    v_factor      float8;
    v_tune_sql    text;
    v_default_sf  float8 := current_setting('autovacuum_vacuum_scale_factor')::float8;
    v_live        bigint;
    v_dead        bigint;
    v_last_vacuum timestamptz;
    v_ids         bigint[];
    v_oldest      interval;
    v_count       bigint;
    v_old         bigint;
    v_error       text;
BEGIN
    IF p_target IS NOT NULL THEN
        BEGIN
            PERFORM pgjobs._target(p_target);  -- 22023 with the register_target hint
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;  -- untrusted: reported below (target.trusted)
        END;
    END IF;

    -- pg_cron ---------------------------------------------------------------
    SELECT count(*)::integer INTO v_runners
      FROM pg_catalog.pg_stat_activity a
     WHERE a.datname = current_database() AND a.application_name = 'pgjobs run'
       AND a.pid <> pg_catalog.pg_backend_pid();

    check_name := NULL;
    target := NULL;
    fix := NULL;
    SELECT e.default_version INTO v_cron_ver
      FROM pg_catalog.pg_available_extensions e WHERE e.name = 'pg_cron';
    IF v_cron_ver IS NULL THEN
        check_name := 'pg_cron.installed';
        detail := 'pg_cron is not installed on this server: nothing runs delete/backfill '
                  'jobs or prune on its own';
        fix := v_loop_fix || current_database() || format(
            '  (or install pg_cron, e.g. apt-get install postgresql-%s-cron, then preload it)',
            current_setting('server_version_num')::integer / 10000);
    ELSE
        RETURN QUERY SELECT 'pg_cron.installed'::text, 'ok'::text, NULL::text,
            format('pg_cron %s is installed on this server', v_cron_ver), NULL::text;
        IF v_preload !~ '(^|,)\s*"?(\$libdir/)?pg_cron"?\s*(,|$)' THEN
            check_name := 'pg_cron.preloaded';
            detail := format('pg_cron is not in shared_preload_libraries (%L)', v_preload);
            fix := format('ALTER SYSTEM SET shared_preload_libraries = %L; '
                          'ALTER SYSTEM SET cron.database_name = %L; -- then restart '
                          'PostgreSQL and run: SELECT pgjobs.schedule();  (or, without '
                          'pg_cron: %s%s)',
                          CASE WHEN btrim(v_preload) = '' THEN 'pg_cron'
                               ELSE v_preload || ',pg_cron' END,
                          current_database(), v_loop_fix, current_database());
        ELSE
            RETURN QUERY SELECT 'pg_cron.preloaded'::text, 'ok'::text, NULL::text,
                'pg_cron is in shared_preload_libraries'::text, NULL::text;
            IF v_cron_db IS DISTINCT FROM current_database() THEN
                check_name := 'pg_cron.database';
                detail := format('pg_cron runs jobs only in database %s (cron.database_name), '
                                 'not in %s', coalesce(v_cron_db, 'postgres'),
                                 current_database());
                fix := v_loop_fix || current_database() || format(
                    '  (or ALTER SYSTEM SET cron.database_name = %L; then restart PostgreSQL '
                    'and run: SELECT pgjobs.schedule();)', current_database());
            ELSE
                RETURN QUERY SELECT 'pg_cron.database'::text, 'ok'::text, NULL::text,
                    format('pg_cron runs jobs in this database (%s)', v_cron_db), NULL::text;
                IF to_regclass('cron.job') IS NULL THEN
                    check_name := 'pg_cron.scheduled';
                    detail := 'extension pg_cron is not created in this database';
                    fix := 'SELECT pgjobs.schedule();  -- creates the extension, schedules '
                           'pgjobs.run and pgjobs.prune';
                ELSE
                    -- format(): the cron schema exists only where pg_cron does.
                    EXECUTE format($q$
                        SELECT jsonb_object_agg(c.jobname, jsonb_build_object(
                                   'schedule', c.schedule, 'command', c.command,
                                   'active', c.active))
                          FROM %I.job c
                         WHERE c.jobname IN ('pgjobs.run', 'pgjobs.prune')
                           AND c.database = current_database()
                    $q$, 'cron') INTO v_jobs;
                    v_jobs := coalesce(v_jobs, '{}');
                    IF (v_jobs #>> '{pgjobs.prune,command}')
                       ~ '^SELECT pgjobs\.prune\(''[^'']*''\)$' THEN
                        v_prune_sql := (v_jobs #>> '{pgjobs.prune,command}') || ';';
                        v_retention := substring(v_jobs #>> '{pgjobs.prune,command}'
                                                 FROM '''([^'']*)''')::interval;
                    END IF;
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
        IF v_runners > 0 THEN
            -- Not a problem: the engine is driven from outside.
            status := 'ok';
            detail := detail || format('; the engine is driven by %s connected `pgjobs run` '
                                       'session(s) instead', v_runners);
            fix := NULL;
        ELSE
            status := 'warn';
        END IF;
        RETURN NEXT;
    END IF;

    -- Engine owner: a superuser-owned engine runs the code of every target
    -- as a superuser, so every target not owned by a superuser is refused
    -- (pgjobs._require_trusted), and any mistake in pgjobs is a superuser's.
    check_name := 'engine.owner';
    target := NULL;
    SELECT string_agg(DISTINCT o.rolname, ', ')
      INTO v_name
      FROM (SELECT n.nspowner AS owner FROM pg_catalog.pg_namespace n
             WHERE n.nspname = 'pgjobs'
            UNION
            SELECT p.proowner FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'pgjobs'::regnamespace) x
      JOIN pg_catalog.pg_roles o ON o.oid = x.owner
     WHERE o.rolsuper;
    IF v_name IS NULL THEN
        status := 'ok';
        detail := 'schema pgjobs and its functions are owned by roles that are not superusers';
        fix := NULL;
    ELSE
        status := 'warn';
        detail := format('schema pgjobs or its functions are owned by superuser %s: pgjobs runs '
                         'as a superuser and refuses every target a superuser does not own',
                         v_name);
        fix := 'CREATE ROLE pgjobs_owner NOLOGIN;  -- then, as a superuser: ALTER SCHEMA '
               'pgjobs OWNER TO pgjobs_owner, and ALTER TABLE / VIEW / SEQUENCE / FUNCTION '
               '... OWNER TO pgjobs_owner for every object of schema pgjobs; run `pgjobs run` '
               '(or pg_cron) as a role with no more rights than the owners of the targets '
               '(docs/operations.md)';
    END IF;
    RETURN NEXT;

    -- Targets ---------------------------------------------------------------
    FOR v_reg IN
        SELECT r.* FROM pgjobs.target_registry r
         WHERE p_target IS NULL OR r.target = p_target
         ORDER BY r.target::text
    LOOP
        target := v_reg.target::text;
        SELECT c.relkind, n.nspname, c.relname INTO v_relkind, v_nsp, v_rel
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = v_reg.target;
        IF NOT FOUND THEN
            check_name := 'target.exists';
            status := 'fail';
            detail := format('the table registered with OID %s no longer exists',
                             v_reg.target::oid);
            fix := format('SELECT pgjobs.unregister_target(%s::regclass);', v_reg.target::oid);
            RETURN NEXT;
            CONTINUE;
        END IF;

        SELECT max(a.attnum) FILTER (WHERE a.attname = v_reg.key_column),
               max(a.attnum) FILTER (WHERE a.attname = v_reg.scope_column),
               max(a.attnum) FILTER (WHERE a.attname = v_reg.document_column)
          INTO v_key_num, v_scope_num, v_doc_num
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = v_reg.target AND a.attnum > 0 AND NOT a.attisdropped;
        IF v_key_num IS NULL OR v_scope_num IS NULL
           OR (v_reg.document_column IS NOT NULL AND v_doc_num IS NULL) THEN
            check_name := 'target.columns';
            status := 'fail';
            detail := format('a registered column no longer exists (key %I, scope %I, '
                             'document %s)', v_reg.key_column, v_reg.scope_column,
                             coalesce(quote_ident(v_reg.document_column), 'none'));
            fix := format('SELECT pgjobs.register_target(%L, p_key => ..., p_scope => ..., '
                          'p_created_at => %L, p_document => ...);  -- with the current '
                          'column names', target, v_reg.created_at_column);
            RETURN NEXT;
            CONTINUE;
        END IF;

        -- Trust: code of the target's owners runs inside pgjobs, as the
        -- owner of its client functions (the runner's role is judged when
        -- it runs: docs/operations.md says to run it as that owner).
        check_name := 'target.trusted';
        fix := NULL;
        SELECT format('role %s (which %s) lacks the rights of role %s, which owns pgjobs'' '
                      'functions', u.role_name, u.reason, a.role_as)
          INTO v_error
          FROM (SELECT p.proowner::regrole::name AS role_as FROM pg_catalog.pg_proc p
                 WHERE p.oid = 'pgjobs._visible_as(name, regclass, text, jsonb, text, integer)'
                               ::regprocedure) a
          CROSS JOIN LATERAL pgjobs._untrusted_roles(v_reg.target, a.role_as) u
         LIMIT 1;
        IF v_error IS NULL THEN
            status := 'ok';
            detail := 'every role whose code runs inside pgjobs jobs on this table has the '
                      'rights pgjobs runs with';
        ELSE
            status := 'fail';
            detail := v_error || ': pgjobs refuses this target (42501)';
            fix := 'Run pgjobs as a role with no more rights than the owners of this table, its '
                   'triggers, column types and functions (docs/operations.md), or revoke the '
                   'TRIGGER grant / change the owner named here.';
        END IF;
        RETURN NEXT;

        -- The (scope, key) btree the keyset walk needs: register_target's
        -- test and fix (pgjobs._key_index).
        check_name := 'target.key_index';
        SELECT k.key_index::text, k.usable, k.fix INTO v_index, v_usable, fix
          FROM pgjobs._key_index(v_reg.target, v_reg.scope_column, v_reg.key_column) k;
        IF v_usable THEN
            status := 'ok';
            detail := format('btree index %s leads with (%I, %I)', v_index,
                             v_reg.scope_column, v_reg.key_column);
        ELSIF v_index IS NOT NULL THEN
            status := 'fail';
            detail := format('btree index %s on (%I, %I) is invalid (a failed CREATE INDEX '
                             'CONCURRENTLY, or a partition without its index?): jobs scan the '
                             'whole table', v_index, v_reg.scope_column, v_reg.key_column);
        ELSE
            status := 'fail';
            detail := format('no valid btree index leads with (%I, %I): every page of a job '
                             'and every masked read scans the table', v_reg.scope_column,
                             v_reg.key_column);
        END IF;
        RETURN NEXT;

        -- Containment filters on the document resolve per scope inside a
        -- btree_gin (scope, document jsonb_path_ops) index.
        IF v_reg.document_column IS NOT NULL THEN
            check_name := 'target.document_index';
            fix := NULL;
            SELECT i.indexrelid::regclass::text INTO v_index
              FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
              JOIN pg_catalog.pg_am am ON am.oid = ic.relam
              JOIN pg_catalog.pg_opclass oc ON oc.oid = i.indclass[1]
             WHERE i.indrelid = v_reg.target AND am.amname = 'gin'
               AND i.indisvalid AND i.indisready AND i.indpred IS NULL
               AND i.indnkeyatts >= 2
               AND i.indkey[0] = v_scope_num AND i.indkey[1] = v_doc_num
               AND oc.opcname IN ('jsonb_path_ops', 'jsonb_ops')
             ORDER BY (oc.opcname = 'jsonb_path_ops') DESC, ic.relname
             LIMIT 1;
            IF v_index IS NOT NULL THEN
                status := 'ok';
                detail := format('gin index %s on (%I, %I) serves containment filters',
                                 v_index, v_reg.scope_column, v_reg.document_column);
            ELSE
                v_name := pgjobs._free_index_name(v_reg.target, ARRAY[v_reg.scope_column, v_reg.document_column]);
                status := 'warn';
                detail := format('no gin index on (%I, %I): document filters read every row '
                                 'of the scope', v_reg.scope_column, v_reg.document_column);
                fix := format('CREATE EXTENSION IF NOT EXISTS btree_gin; '
                              '%s %I ON %I.%I USING gin (%I, %I jsonb_path_ops);',
                              CASE WHEN v_relkind = 'p' THEN 'CREATE INDEX'
                                   ELSE 'CREATE INDEX CONCURRENTLY' END,
                              v_name, v_nsp, v_rel, v_reg.scope_column, v_reg.document_column);
            END IF;
            RETURN NEXT;
        END IF;

        -- Autovacuum: one tenant's mass delete must not leave the shared
        -- relation waiting for 20% churn. Partitioned tables: their leaves.
        check_name := 'target.autovacuum';
        fix := NULL;
        SELECT array_agg(t.leaf::text ORDER BY t.leaf::text)
                   FILTER (WHERE t.factor > 0.05 OR NOT t.enabled),
               max(t.factor),
               string_agg(concat_ws(' ',
                   CASE WHEN t.factor > 0.05 THEN format(
                       'ALTER TABLE %s SET (autovacuum_vacuum_scale_factor = 0.02, '
                       'autovacuum_analyze_scale_factor = 0.02);', t.leaf) END,
                   CASE WHEN NOT t.enabled THEN format(
                       'ALTER TABLE %s RESET (autovacuum_enabled);', t.leaf) END), ' '
                   ORDER BY t.leaf::text) FILTER (WHERE t.factor > 0.05 OR NOT t.enabled)
          INTO v_leaves, v_factor, v_tune_sql
          FROM (SELECT c.oid::regclass AS leaf,
                       coalesce((SELECT o.option_value::float8
                                   FROM pg_catalog.pg_options_to_table(c.reloptions) o
                                  WHERE o.option_name = 'autovacuum_vacuum_scale_factor'),
                                v_default_sf) AS factor,
                       coalesce((SELECT o.option_value::boolean
                                   FROM pg_catalog.pg_options_to_table(c.reloptions) o
                                  WHERE o.option_name = 'autovacuum_enabled'), true) AS enabled
                  FROM pg_catalog.pg_class c
                 WHERE c.relkind = 'r'
                   AND (c.oid = v_reg.target
                        OR (v_relkind = 'p' AND c.oid IN (
                              SELECT pt.relid FROM pg_catalog.pg_partition_tree(v_reg.target) pt
                               WHERE pt.isleaf)))) t;
        IF v_leaves IS NULL THEN
            status := 'ok';
            detail := format('autovacuum_vacuum_scale_factor %s', coalesce(v_factor::text,
                             'n/a (no partitions)'));
        ELSIF v_reg.options ->> 'tune_autovacuum' = 'false' THEN
            status := 'ok';
            detail := format('autovacuum_vacuum_scale_factor up to %s, or autovacuum disabled, '
                             'on %s; not judged: registered with tune_autovacuum off',
                             v_factor, array_to_string(v_leaves, ', '));
        ELSE
            status := 'warn';
            detail := format('autovacuum waits for %s%% of %s to be dead (or is disabled there): '
                             'one tenant''s mass delete slows every tenant''s reads',
                             round((v_factor * 100)::numeric, 1),
                             array_to_string(v_leaves, ', '));
            fix := v_tune_sql;
        END IF;
        RETURN NEXT;

        -- Dead tuples (statistics, possibly a few seconds behind).
        check_name := 'target.dead_tuples';
        fix := NULL;
        SELECT coalesce(sum(s.n_live_tup), 0)::bigint, coalesce(sum(s.n_dead_tup), 0)::bigint,
               max(greatest(s.last_vacuum, s.last_autovacuum))
          INTO v_live, v_dead, v_last_vacuum
          FROM pg_catalog.pg_stat_all_tables s
         WHERE s.relid = v_reg.target
            OR (v_relkind = 'p' AND s.relid IN (
                  SELECT pt.relid FROM pg_catalog.pg_partition_tree(v_reg.target) pt
                   WHERE pt.isleaf));
        IF v_dead > 1000 AND v_dead > 0.2 * v_live THEN
            status := 'warn';
            detail := format('%s dead tuples for %s live (%s%%), last vacuumed %s', v_dead,
                             v_live, round(100.0 * v_dead / greatest(v_live, 1)),
                             coalesce(v_last_vacuum::text, 'never'));
            fix := format('VACUUM (ANALYZE) %s;', target);
        ELSE
            status := 'ok';
            detail := format('%s dead tuples for %s live', v_dead, v_live);
        END IF;
        RETURN NEXT;
    END LOOP;

    -- Jobs --------------------------------------------------------------------
    target := CASE WHEN p_target IS NOT NULL THEN p_target::text END;

    check_name := 'jobs.leases';
    fix := NULL;
    SELECT array_agg(j.id ORDER BY j.id), max(now() - j.lease_expires_at)
      INTO v_ids, v_oldest
      FROM pgjobs.jobs j
     WHERE j.status = 'running' AND j.lease_expires_at < now()
       AND (p_target IS NULL OR j.target = p_target);
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'no running job has an expired lease';
    ELSE
        status := 'warn';
        detail := format('%s running job(s) whose worker stopped heartbeating, lease expired '
                         'up to %s ago (ids %s); a writing one holds its scope''s gate until '
                         'prune or a claim takes it back', cardinality(v_ids),
                         date_trunc('second', v_oldest), array_to_string(v_ids[1:20], ', '));
        fix := v_prune_sql;
    END IF;
    RETURN NEXT;

    check_name := 'jobs.heartbeats';
    fix := NULL;
    SELECT array_agg(j.id ORDER BY j.id), max(now() - coalesce(j.heartbeat_at, j.started_at))
      INTO v_ids, v_oldest
      FROM pgjobs.jobs j
     WHERE j.status = 'running' AND j.lease_expires_at >= now()
       AND coalesce(j.heartbeat_at, j.started_at, j.updated_at) < now() - interval '15 minutes'
       AND (p_target IS NULL OR j.target = p_target);
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'every running job heartbeated in the last 15 minutes';
    ELSE
        status := 'warn';
        detail := format('%s running job(s) without a heartbeat for up to %s but with a lease '
                         'still valid (ids %s): their worker may hang', cardinality(v_ids),
                         date_trunc('second', v_oldest), array_to_string(v_ids[1:20], ', '));
        -- Lapse the lease now, then rescue as for any expired lease: the
        -- worker is fenced off (its lease is gone) and the job is retried.
        fix := format('UPDATE pgjobs.jobs SET lease_expires_at = now() - interval ''1 second'' '
                      'WHERE id = ANY (%L::bigint[]) AND status = ''running''; %s  -- takes '
                      'them back now; their worker is fenced off', v_ids, v_prune_sql);
    END IF;
    RETURN NEXT;

    -- A paused writer keeps its place in its scope's queue: later writers of
    -- the scope wait until it is resumed or canceled.
    check_name := 'jobs.paused';
    fix := NULL;
    SELECT array_agg(p.id ORDER BY p.id), max(now() - p.updated_at)
      INTO v_ids, v_oldest
      FROM pgjobs.jobs p
     WHERE p.status = 'paused' AND p.kind IN ('delete', 'backfill', 'import')
       AND (p_target IS NULL OR p.target = p_target)
       AND EXISTS (SELECT FROM pgjobs.jobs w
                    WHERE w.target = p.target AND w.scope = p.scope AND w.status = 'queued'
                      AND w.kind IN ('delete', 'backfill', 'import')
                      AND coalesce(w.gate_order, w.id) > coalesce(p.gate_order, p.id));
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'no paused writing job keeps later writers of its scope waiting';
    ELSE
        status := 'warn';
        detail := format('%s paused writing job(s), paused up to %s ago, keep later writers of '
                         'their scope waiting (ids %s)', cardinality(v_ids),
                         date_trunc('second', v_oldest), array_to_string(v_ids[1:20], ', '));
        fix := format('SELECT pgjobs.resume(id) FROM pgjobs.jobs WHERE id = ANY (%L::bigint[]);  '
                      '-- or pgjobs.cancel(id) to let the scope move on', v_ids);
    END IF;
    RETURN NEXT;

    -- Throttling (pgjobs._throttle) -------------------------------------------
    check_name := 'jobs.throttled';
    fix := NULL;
    SELECT array_agg(j.id ORDER BY j.id),
           string_agg(format('job %s since %s: %s', j.id,
                             date_trunc('second', (j.checkpoint #>> '{throttled,since}')::timestamptz),
                             j.checkpoint #>> '{throttled,reason}'), '; ' ORDER BY j.id)
      INTO v_ids, v_error
      FROM pgjobs.jobs j
     WHERE j.status IN ('queued', 'running') AND j.checkpoint ? 'throttled'
       AND (p_target IS NULL OR j.target = p_target);
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'no job is held by a throttling signal';
    ELSE
        status := 'warn';
        detail := format('%s job(s) held until the signal clears: %s', cardinality(v_ids),
                         left(v_error, 2000));
        fix := format('Fix the cause (a lagging standby: SELECT * FROM pg_stat_replication; '
                      'an inactive consumer of a slot: pg_replication_slots), or raise the '
                      'limit of these jobs (0 turns a limit off): UPDATE pgjobs.jobs SET options '
                      '= options || ''{"max_replica_lag_bytes": 1073741824}'' WHERE id = ANY '
                      '(%L::bigint[]);', v_ids);
    END IF;
    RETURN NEXT;

    -- The health signals need the LSNs of pg_stat_replication and the tables
    -- of pg_stat_progress_vacuum, visible to pg_read_all_stats (pg_monitor).
    target := NULL;
    check_name := 'throttle.visibility';
    fix := NULL;
    SELECT p.proowner::regrole::text INTO v_name
      FROM pg_catalog.pg_proc p WHERE p.oid = 'pgjobs._health()'::regprocedure;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                WHERE r.rolname = v_name
                  AND (r.rolsuper OR pg_has_role(r.oid, 'pg_read_all_stats', 'USAGE'))) THEN
        status := 'ok';
        detail := format('%s, which owns pgjobs._health, sees replica lag and autovacuum',
                         v_name);
    ELSE
        status := 'warn';
        detail := format('%s, which owns pgjobs._health, is not a member of pg_monitor: the '
                         'replica lag of standbys without a slot, autovacuum and old '
                         'transactions of other roles are invisible to throttling', v_name);
        fix := format('GRANT pg_monitor TO %s;  -- as a superuser', v_name);
    END IF;
    RETURN NEXT;

    -- Queued work nothing takes --------------------------------------------
    target := CASE WHEN p_target IS NOT NULL THEN p_target::text END;
    check_name := 'jobs.queued_age';
    fix := NULL;
    SELECT array_agg(j.id ORDER BY j.id), max(now() - j.run_at)
      INTO v_ids, v_oldest
      FROM pgjobs.jobs j
     WHERE j.status = 'queued' AND j.run_at < now() - interval '15 minutes'
       AND (p_target IS NULL OR j.target = p_target);
    IF v_ids IS NULL THEN
        status := 'ok';
        detail := 'no job has been due for more than 15 minutes';
    ELSE
        status := 'warn';
        detail := format('%s queued job(s) due for up to %s (ids %s): nothing runs them, or a '
                         'writing job of their scope holds the gate', cardinality(v_ids),
                         date_trunc('second', v_oldest), array_to_string(v_ids[1:20], ', '));
        fix := 'SELECT pgjobs.schedule();  -- or: ' || v_loop_fix || current_database()
               || '; and for exports/imports: pgjobs worker';
    END IF;
    RETURN NEXT;

    -- Exports and imports run in `pgjobs worker` (application_name
    -- 'pgjobs worker', set by poller/worker.py), never in the database.
    check_name := 'workers.listening';
    fix := NULL;
    SELECT array_agg(j.id ORDER BY j.id) INTO v_ids
      FROM pgjobs.jobs j
     WHERE j.status = 'queued' AND j.kind IN ('export', 'import') AND j.run_at <= now()
       AND (p_target IS NULL OR j.target = p_target);
    SELECT count(*) INTO v_count
      FROM pg_catalog.pg_stat_activity a
     WHERE a.datname = current_database() AND a.application_name = 'pgjobs worker';
    IF v_ids IS NULL OR v_count > 0 THEN
        status := 'ok';
        detail := format('%s queued export/import job(s); %s `pgjobs worker` connection(s)',
                         coalesce(cardinality(v_ids), 0), v_count);
    ELSE
        status := 'warn';
        detail := format('%s export/import job(s) queued (ids %s) and no `pgjobs worker` is '
                         'connected to this database: nothing runs them', cardinality(v_ids),
                         array_to_string(v_ids[1:20], ', '));
        fix := 'pgjobs worker   # with PGJOBS_DSN pointing at database ' || current_database()
               || ' and the storage credentials';
    END IF;
    RETURN NEXT;

    -- pg_cron's run history of pgjobs' jobs (prune trims it) -----------------
    target := NULL;
    IF to_regclass('cron.job_run_details') IS NOT NULL
       AND has_table_privilege('cron.job_run_details', 'SELECT')
       AND has_table_privilege('cron.job', 'SELECT') THEN
        check_name := 'pg_cron.history';
        fix := NULL;
        EXECUTE format($q$
            SELECT count(*), count(*) FILTER (WHERE d.end_time < now() - $1)
              FROM %1$I.job_run_details d
              JOIN %1$I.job c ON c.jobid = d.jobid
             WHERE c.jobname IN ('pgjobs.run', 'pgjobs.prune')
        $q$, 'cron') INTO v_count, v_old USING v_retention;
        IF v_count > 10000 AND v_old > 0 THEN
            status := 'warn';
            detail := format('cron.job_run_details holds %s rows of pgjobs'' cron jobs, %s '
                             'older than the retention (%s): they are not being trimmed',
                             v_count, v_old, v_retention);
            fix := v_prune_sql;
        ELSE
            status := 'ok';
            detail := format('cron.job_run_details holds %s rows of pgjobs'' cron jobs (%s '
                             'older than the retention, %s)', v_count, v_old, v_retention);
        END IF;
        RETURN NEXT;
    END IF;

    -- Objects of pruned exports, deleted from storage by `pgjobs worker` ------
    check_name := 'storage.deletions';
    fix := NULL;
    SELECT count(*) FILTER (WHERE d.attempts < 10 AND d.queued_at < now() - interval '1 day'),
           count(*),
           array_agg(d.id ORDER BY d.id) FILTER (WHERE d.attempts >= 10),
           min(d.last_error) FILTER (WHERE d.attempts >= 10)
      INTO v_old, v_count, v_ids, v_error
      FROM pgjobs.storage_deletions d;
    IF v_ids IS NOT NULL THEN
        status := 'warn';
        detail := format('%s object deletion(s) gave up after 10 attempts (ids %s), e.g.: %s',
                         cardinality(v_ids), array_to_string(v_ids[1:20], ', '), v_error);
        fix := format('UPDATE pgjobs.storage_deletions SET attempts = 0, retry_at = now() '
                      'WHERE id = ANY (%L::bigint[]);  -- once the cause is fixed, then: '
                      'pgjobs worker --once', v_ids);
    ELSIF v_old > 0 THEN
        status := 'warn';
        detail := format('%s object(s) of pruned exports queued for deletion over a day ago: '
                         'no `pgjobs worker` is running', v_old);
        fix := 'pgjobs worker --once   # with the storage credentials of the exports';
    ELSE
        status := 'ok';
        detail := format('%s object(s) of pruned exports queued for deletion, none over a '
                         'day old', v_count);
    END IF;
    RETURN NEXT;
END
$function$;

COMMENT ON FUNCTION pgjobs.doctor(regclass) IS
'Health checks, one row per finding (check_name, status ok | warn | fail, target, detail, fix): '
'pg_cron (installed, preloaded, serving this database, pgjobs scheduled, run history size), '
'each registered target (or only p_target): table and columns exist, the (scope, key) btree '
'index, a btree_gin (scope, document jsonb_path_ops) index for document targets, autovacuum '
'scale factor, dead tuples; running jobs with expired leases or no heartbeat for 15 minutes; '
'jobs held by throttling and why; jobs due for over 15 minutes still queued; queued exports or '
'imports with no `pgjobs worker` connected; whether pgjobs'' owner sees the throttling signals '
'(pg_monitor); '
'storage deletions pending over a day. Every finding that is not ok carries in fix the exact '
'SQL (or command) that fixes it. Read-only. For admins (`pgjobs doctor`).';
