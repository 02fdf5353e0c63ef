CREATE OR REPLACE FUNCTION pgjobs._maybe_analyze(p_job pgjobs.jobs, p_scope_column name,
                                                 p_done bigint)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Refreshes the target's row count and scope statistics while a delete job
-- churns it, a bounded number of times per job. After one tenant's mass
-- delete the stale statistics still count the deleted rows, and the planner
-- then walks the primary key across every tenant to find the scope's few
-- survivors (a 0.7 ms keyset page became 76 ms); autovacuum catches up only
-- a minute or more later. Only the scope column is analyzed: skipping the
-- jsonb statistics makes it several times cheaper. And on a sample of 3000
-- rows (statistics target 10, unless the column has its own), not 30,000:
-- ANALYZE reads about one heap page per sampled row, so the default sample
-- read 30,000 pages of a 2M-row table, 2 s against a 1.2 s bulk DELETE of
-- the job's 500,000 rows; 3000 pages cost a tenth of that. The planner needs
-- only the row count and the scope's new share from it. It is a stopgap
-- until autovacuum analyzes the table at full size (of a partitioned
-- target, the leaves the scope's pages read: see below): a column-list ANALYZE
-- does not reset n_mod_since_analyze, so autovacuum's trigger still fires.
--
-- The schedule is the job's own, kept in its checkpoint ('analyzes': how
-- many times it analyzed, 'analyzed_done': its done count then), not the
-- table's n_mod_since_analyze: an ANALYZE with a column list does not reset
-- that counter, so a rule on it alone analyzed before every page once a
-- fifth of the table had changed (a 40x slowdown for the rest of the job).
-- The job analyzes when the rows it deleted since its last analyze reach a
-- fifth of the table's rows (pg_class.reltuples; of a partitioned target,
-- of the scope's leaves) and at least 10,000, and its done count has at least
-- doubled since then, at most 4 times: a few ANALYZEs per job, spread
-- geometrically, never a per-page cost. (The table's counters could not
-- serve anyway: a runner's own changes reach pg_stat_user_tables only when
-- its session goes idle, after the CALL, so within one budget they lag.)
-- Called by pgjobs._run_page before each delete page (p_done: the rows
-- deleted by the pages committed so far); a call that analyzes runs no
-- page, so the ANALYZE has a transaction of its own. And after the last
-- page (p_done: with that page's rows), in its transaction: no call
-- follows it, and the job must not end on stale statistics.
-- Never fails the page: a lock wait (autovacuum is analyzing or vacuuming,
-- another session's ANALYZE or CREATE INDEX CONCURRENTLY) or a missing
-- privilege just skips it. A skip is a try all the same: it counts towards
-- the cap (analyze_skips) and moves the schedule on (analyzed_done), so the
-- next try waits for the job's done to double again. It was tried again
-- before every page while the lock was held, each try waiting out the
-- page's lock_timeout (200 ms on a 50 ms page: a cliff of its own for as
-- long as a VACUUM of the target ran). Locks: SHARE UPDATE EXCLUSIVE on the
-- target, for the ANALYZE. Returns the checkpoint fields to carry:
-- analyzes, analyzed_done and, once one was skipped, analyze_skips ('{}'
-- while the job has not tried yet).
DECLARE
    v_analyzes integer := coalesce((p_job.checkpoint ->> 'analyzes')::integer, 0);
    v_since bigint := coalesce((p_job.checkpoint ->> 'analyzed_done')::bigint, 0);
    v_skips integer := coalesce((p_job.checkpoint ->> 'analyze_skips')::integer, 0);
    v_rows double precision;
    v_target text;
    v_plan json;
    v_relations regclass[];
    v_relation regclass;
    v_kept jsonb := CASE WHEN p_job.checkpoint ? 'analyzed_done'
                         THEN jsonb_build_object('analyzes', v_analyzes,
                                                 'analyzed_done', v_since)
                         ELSE '{}'::jsonb END
                    || CASE WHEN p_job.checkpoint ? 'analyze_skips'
                            THEN jsonb_build_object('analyze_skips', v_skips)
                            ELSE '{}'::jsonb END;
BEGIN
    IF v_analyzes + v_skips >= 4 OR p_done < 2 * v_since OR p_done - v_since < 10000 THEN
        RETURN v_kept;
    END IF;
    v_target := current_setting('default_statistics_target');
    BEGIN
        IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = p_job.target) = 'p' THEN
            -- A partitioned target: ANALYZE of the parent would lock and
            -- sample every tenant's partition (waiting out lock_timeout on
            -- one held by a DDL, and skipped every time); the pages are
            -- pruned to the scope's leaves and planned on their statistics,
            -- so those are analyzed, found as the pages find them (the plan
            -- of the scope's equality: pruning locks no other partition).
            -- Their rows, not the parent's, set the threshold: a leaf that
            -- the scope shares with a few tenants is churned long before a
            -- fifth of the whole table is, and was never analyzed. Planned
            -- before every page from 10,000 rows until the threshold (a
            -- pruned plan of one equality, no page's cost).
            EXECUTE format('EXPLAIN (VERBOSE, FORMAT JSON) SELECT FROM %s t WHERE t.%I = %L',
                           p_job.target, p_scope_column, p_job.scope)
               INTO v_plan;
            v_relations := ARRAY(
                SELECT DISTINCT format('%I.%I', n ->> 'Schema', n ->> 'Relation Name')::regclass
                  FROM jsonb_path_query(v_plan::jsonb,
                                        'strict $.**?(exists(@."Relation Name"))') n);
        ELSE
            v_relations := ARRAY[p_job.target];
        END IF;
        SELECT sum(greatest(c.reltuples, 0)) INTO v_rows
          FROM pg_catalog.pg_class c WHERE c.oid = ANY (v_relations);
        IF p_done - v_since < 0.2 * coalesce(v_rows, 0) THEN
            RETURN v_kept;
        END IF;
        PERFORM set_config('default_statistics_target',
                           least(v_target::integer, 10)::text, true);
        FOREACH v_relation IN ARRAY v_relations LOOP
            EXECUTE format('ANALYZE %s (%I)', v_relation, p_scope_column);
        END LOOP;
    EXCEPTION WHEN lock_not_available OR insufficient_privilege THEN
        PERFORM set_config('default_statistics_target', v_target, true);
        RETURN jsonb_build_object('analyzes', v_analyzes, 'analyzed_done', p_done,
                                  'analyze_skips', v_skips + 1);
    END;
    PERFORM set_config('default_statistics_target', v_target, true);
    RETURN jsonb_build_object('analyzes', v_analyzes + 1, 'analyzed_done', p_done)
        || CASE WHEN v_skips > 0 THEN jsonb_build_object('analyze_skips', v_skips)
                ELSE '{}'::jsonb END;
END
$$;
