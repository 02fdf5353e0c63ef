CREATE OR REPLACE FUNCTION pgjobs._run_page(p_id bigint, p_worker text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- One page of a delete or backfill job, in the caller's transaction (the
-- caller COMMITs right after, so a page is one short transaction).
--
-- Two strategies, chosen at the first call (pgjobs._page_strategy):
-- * 'range': a page is a key range of the scope, the next page_size keys
--   after the cursor, found on the (scope, key) index; the rows of that
--   range that match the job's predicate are deleted or updated.
-- * 'collect' (deletes whose filter an index narrows): the first call
--   stores the addresses of the matching rows (pgjobs._collect_matches); a
--   page deletes the rows at the next page_size addresses that still match
--   the predicate; when the addresses are used up, sweep pages delete what
--   still matches (rows updated meanwhile) until one deletes less than a page.
--   A job whose matches fit one page deletes them in its first call instead,
--   in one statement that proves none is left, and ends there (below).
-- A delete never ends 'succeeded' with rows of its predicate left: when
-- the range walk reaches the end of the scope, it checks that nothing
-- matches any more (each page looks at the keys the pages before it
-- deleted, then one call looks at the whole scope at once; jobs that began
-- under the previous release: calls of their own, a segment of the walk
-- each, then the whole scope; a small scope in its last page: see the
-- last page below), and deletes or
-- sweeps what does (rows the walk cannot see: a key that went NULL, a row
-- inserted behind the cursor) as 'collect' does. A
-- sweep that cannot delete a matching row (a trigger or rule keeps it)
-- fails the job instead of looping. A backfill page that a BEFORE UPDATE
-- trigger keeps rows out of fails the job too (27000, see the UPDATE
-- below), rather than report rows set that were not. So does a key column that is no
-- longer NOT NULL, and a cursor that does not advance (a key whose text
-- does not read back as the same value): failed, not retried, with the
-- column and type named.
-- Either way the cursor, done and the lease advance in the same
-- transaction (through heartbeat). A crash loses at most this page, which
-- the next owner redoes: deleting or setting the same rows twice changes
-- nothing.
--
-- The first call counts the job's rows (total; 'collect': collects them)
-- and stores an empty cursor.
-- Page size adapts to the page_ms target (default 50 ms) unless page_size
-- is set. A delete's call that runs the job's ANALYZE does only that (see
-- below) and returns 'more'. A lock wait beyond lock_timeout on the table
-- itself (a session holds it in a mode that blocks the page's writes,
-- pgjobs._lock_holders) returns 'blocked', nothing changed: the caller
-- hands the job back (pgjobs._run_step). One on rows of the page retries
-- the page later instead of failing, with a WARNING at the first wait and
-- every 100th naming the rows and, after 1000, fails the attempt saying
-- the same; other errors go to pgjobs.fail (retryable for transient ones).
--
-- Locks: the job row FOR UPDATE for the whole page, so a cancel, rescue or
-- second runner waits or skips until the page commits (so a pause or cancel
-- requested meanwhile takes effect after it); the page's rows.
-- Returns 'more', 'retry' (lock wait on rows), 'blocked' (on the table), 'done',
-- 'canceled', 'paused', 'failed' or
-- 'lost' (not the owner any more: nothing was changed).
DECLARE
    v_job pgjobs.jobs;
    v_reg pgjobs.target_registry;
    v_after text;
    v_upper text;
    v_size integer;
    v_target_ms integer;
    v_rows bigint := 0;
    v_total bigint;
    v_sample_pct numeric;
    v_estimated boolean;
    v_plan json;
    v_pages bigint;
    v_t0 timestamptz;
    v_ms double precision;
    v_range text;
    v_scope text;
    v_indexscan text := current_setting('enable_indexscan');
    v_seqscan text := current_setting('enable_seqscan');
    v_bitmapscan text := current_setting('enable_bitmapscan');
    v_collect boolean;
    v_pos bigint;
    v_collected bigint;
    v_tids tid[];
    v_batch tid[];
    v_sweep boolean := false;
    v_last boolean;
    v_checkpoint jsonb;
    v_state text;
    v_detail text;
    -- The statement_timeout whose timer runs (armed when the CALL or SELECT
    -- began, from the setting then), before this page sets its own, which
    -- arms none: a 57014 it catches is told by it (pgjobs._statement_timed_out).
    v_armed text := current_setting('statement_timeout');
    v_timed_out boolean;
    v_waits integer;
    v_holders text;
    v_key_type text;
    v_matching bigint;
    v_left boolean := false;
    v_now double precision := extract(epoch FROM clock_timestamp());
    v_verified jsonb;
    v_trust record;
    v_epoch bigint;
    v_fresh boolean;
    v_filtered boolean;
    v_budget integer;
    v_check jsonb := '{}'::jsonb;
    v_bounds jsonb;
    v_spans jsonb;
    v_span bigint;
    v_next integer;
    v_segment_upper text;
    v_check_after text;
    v_check_upper text;
    v_checking boolean := false;
    v_trailing boolean := false;
    v_behind bigint;
    v_locked_oids oid[];
    v_locked_tids tid[];
    v_columns text;
    v_before name;
    v_unjudged record;
    v_guard_ok text;
    v_guard_blocker text;
    v_skip_rows bigint;
    v_skip_key text;
    v_skip_blocker jsonb;
    v_skip jsonb;
    v_found bigint;
    v_first_note jsonb;
    v_sort text := current_setting('enable_sort');
    v_incremental_sort text := current_setting('enable_incremental_sort');
BEGIN
    SELECT * INTO v_job FROM pgjobs.jobs WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR v_job.status <> 'running' OR v_job.worker IS DISTINCT FROM p_worker
       OR v_job.lease_expires_at <= now() THEN
        RETURN 'lost';
    END IF;
    -- A job handed back before its first call (its table held: pgjobs._table_hand_back)
    -- has a checkpoint that holds only that note: its first call is still to come.
    -- So does one whose first call waited on row locks (a first call that
    -- deletes: see the collect strategy below), which holds the waits so far.
    IF v_job.checkpoint - 'throttled' - 'lock_waits' = '{}'::jsonb THEN
        v_first_note := v_job.checkpoint;
        v_job.checkpoint := NULL;
    END IF;
    IF v_job.cancel_requested_at IS NOT NULL THEN
        PERFORM pgjobs.heartbeat(p_id, p_worker);  -- ends the job canceled, announces it
        DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_id;
        RETURN 'canceled';
    END IF;
    IF v_job.pause_requested_at IS NOT NULL THEN
        -- Ends the attempt paused, cursor and collected addresses kept, the
        -- attempt not counted, and announces it (pgjobs.heartbeat).
        PERFORM pgjobs.heartbeat(p_id, p_worker);
        RETURN 'paused';
    END IF;
    -- Unregistered, or untrusted (code of a role without the runner's rights
    -- would run in this page: pgjobs._trust_verdict), or its submitter no
    -- longer allowed to do it (pgjobs._require_submitter): the job fails for good.
    -- Checked in full at the first page of every attempt and again before
    -- the first page that starts 1 s or more after the last check; the
    -- pages in between (at page_ms 50, about 20) run on that verdict. The
    -- two checks cost 3-5 ms a page (11 ms under load), the largest fixed
    -- cost of a page; so a REVOKE, a DROP ROLE, row-level security turned
    -- on, or a change that makes the target untrusted stops the job within
    -- 1 s of pages (docs/RELIABILITY.md), at the next page for DDL and role
    -- commands (below; REASSIGN OWNED keeps the 1 s). The verdict is kept in the
    -- checkpoint ('verified': the attempt's identity and when), which only
    -- pgjobs and administrators may write (clients read jobs rows only), and
    -- belongs to the attempt: a new claim gets a new identity, so every
    -- attempt, retry and resume starts with a full check.
    -- And at the first page after any DDL committed since the verdict (the
    -- DDL fence, migration 0091): the verdict holds the DDL epoch its check
    -- saw (pgjobs.ddl_fence), and a page that reads another checks in
    -- full. The 1 s window alone let a trusted role's DDL committed between
    -- two pages (a rule into a client's table, TRIGGER or REFERENCES granted
    -- to a client, a reached table given away, a policy reading a client's
    -- view) run a client's trigger as the runner on the pages of that
    -- second. pgjobs._ddl_fence_epoch holds pgjobs.ddl_fence IN ROW SHARE
    -- MODE from here to the page's commit, and a DDL's commit bumps the
    -- epoch under EXCLUSIVE (pgjobs._ddl_fence_commit): no DDL commits
    -- between this verdict and the page's statements (a page's statement
    -- takes a change committed meanwhile when it first locks a table it
    -- reaches). The target is locked first (ACCESS SHARE, pgjobs._hold_target;
    -- that wait, for an ALTER TABLE not yet committed, is the step's 1 s
    -- and a hand-back, as before), so a DDL transaction holding the target
    -- never waits at its commit for a page that waits for it. A commit
    -- holding the fence (microseconds; a migration's whole remainder after
    -- SET CONSTRAINTS ALL IMMEDIATE): the page does not wait for it, as it
    -- holds the target by then (pgjobs._ddl_fence_epoch says why):
    -- 'blocked', the step tries again. Without the
    -- fence's event triggers (migration 0091 run by a role that may not
    -- create them; pgjobs.doctor's engine.ddl_fence) the epoch never moves
    -- and the pages keep the 1 s window.
    IF EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = v_job.target) THEN
        PERFORM pgjobs._hold_target(v_job.target);
    END IF;
    BEGIN
        v_epoch := pgjobs._ddl_fence_epoch();
    EXCEPTION WHEN lock_not_available OR serialization_failure THEN
        RETURN 'blocked';
    END;
    v_verified := v_job.checkpoint -> 'verified';
    BEGIN
        v_fresh := coalesce(v_verified ->> 'worker' = p_worker
                            AND CASE WHEN jsonb_typeof(v_verified -> 'at') = 'number'
                                     THEN (v_verified ->> 'at')::double precision END
                                BETWEEN v_now - 1.0 AND v_now
                            AND coalesce(v_verified -> 'epoch', 'null'::jsonb)
                                = coalesce(to_jsonb(v_epoch), 'null'::jsonb),
                            false);
        IF v_fresh THEN
            SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = v_job.target;
            IF NOT FOUND THEN
                v_reg := pgjobs._target(v_job.target);  -- unregistered meanwhile: 22023
            END IF;
            -- Role commands (GRANT role, REVOKE role, ALTER ROLE NOSUPERUSER,
            -- NOINHERIT, NOBYPASSRLS, DROP ROLE) fire no event trigger and
            -- move no epoch: the roles the full check found in the reach
            -- (kept in the verdict) are asked again, as are the submitter's
            -- rights, in this page's transaction, after the fence. One
            -- committed while the page runs (no lock orders the two) is seen
            -- by the next page.
            v_fresh := pgjobs._verdict_roles_hold(v_job, v_reg, v_verified -> 'roles');
        END IF;
        IF NOT v_fresh THEN
            -- The full check: pgjobs._target's two checks, the second as
            -- pgjobs._trust_verdict, whose one walk of the target's reach
            -- gives the trust check and the reach's roles the verdict
            -- keeps (the roles walked again for them made a full check
            -- walk twice).
            v_reg := pgjobs._target_registration(v_job.target);
            v_trust := pgjobs._trust_verdict(v_job.target);
            IF v_trust.message IS NOT NULL THEN
                RAISE EXCEPTION '%', v_trust.message
                    USING ERRCODE = '42501', HINT = v_trust.hint;
            END IF;
            PERFORM pgjobs._require_submitter(v_job, v_reg);
            v_verified := jsonb_build_object('worker', p_worker, 'at', v_now, 'epoch', v_epoch,
                                             'roles', v_trust.roles);
        END IF;
    EXCEPTION WHEN invalid_parameter_value OR insufficient_privilege THEN
        GET STACKED DIAGNOSTICS v_detail = MESSAGE_TEXT;
        PERFORM pgjobs.fail(p_id, p_worker, v_detail, false);
        DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_id;
        RETURN 'failed';
    END;
    -- The keyset walk cannot reach a NULL key: registration requires NOT
    -- NULL, and this re-checks it (one catalog row) in case it was dropped.
    IF NOT coalesce((SELECT a.attnotnull FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = v_job.target AND a.attname = v_reg.key_column
                        AND NOT a.attisdropped), false) THEN
        PERFORM pgjobs.fail(p_id, p_worker,
            format('key column %I of %s is not NOT NULL (any more): rows with a NULL key '
                   'cannot be paged; run ALTER TABLE %s ALTER COLUMN %I SET NOT NULL; '
                   'and submit the job again', v_reg.key_column, v_job.target, v_job.target,
                   v_reg.key_column), false);
        DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_id;
        RETURN 'failed';
    END IF;
    -- The columns the job was compiled against (its predicate and SET list
    -- name them): renamed, dropped or retyped since its submit, this page
    -- would act on other columns, so the job fails for good. The table is
    -- held from here to the page's commit (pgjobs._hold_target), so no such
    -- change lands between this check and the page's statements (taken
    -- above, before the DDL fence).
    v_detail := (pgjobs._columns_changed(v_job.target, v_job.target_columns)).message;
    IF v_detail IS NOT NULL THEN
        PERFORM pgjobs.fail(p_id, p_worker,
            format('%s since job %s was submitted: its row set and changes were compiled '
                   'against the old columns; submit it again', v_detail, p_id), false);
        DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_id;
        RETURN 'failed';
    END IF;
    -- The deferred typo guard while it is pending (payload unchecked_fields:
    -- the scope had no row at the submit, nor at any judgment since), in
    -- this page's transaction, the table held, before the page reads a row.
    -- Only here: the claim leaves it to the page (pgjobs._may_start_attempt),
    -- as a missing path on a large scope walks pgjobs.field_check_rows rows
    -- (0.3-1 s at 1M) and the claim held every job it had picked, and its
    -- runner, that long. Judged at every page until a judgment against
    -- rows clears the list (pgjobs._unchecked_fields_problem), so rows that
    -- come after an attempt began on a scope still empty (a restore while
    -- the job ran, or after its runner died) are judged too; a scope still
    -- empty costs one probe of (scope, key). A call walks at most 100,000
    -- rows (pgjobs._unchecked_fields_problem) and returns 'more' while the
    -- walk goes on, having read no row for the page. A walk that could not read the
    -- target within its 200 ms (an index of it held: the table's own
    -- holders were looked for before this page, pgjobs._run_step) returns
    -- 'blocked', nothing read or changed: it used to go on with the page,
    -- the paths unjudged.
    IF jsonb_typeof(v_job.payload -> 'unchecked_fields') = 'array' THEN
        BEGIN
            SELECT u.message, u.hint INTO v_unjudged
              FROM pgjobs._unchecked_fields_problem(v_job) u;
        EXCEPTION WHEN query_canceled OR OTHERS THEN
            -- A transient error of the walk (the only kind it raises): the
            -- attempt fails and the job is retried with backoff, as a page's.
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_detail = MESSAGE_TEXT;
            RETURN pgjobs._fail_attempt(p_id, p_worker,
                format('the typo guard''s walk of the scope: %s (SQLSTATE %s)', v_detail,
                       v_state),
                v_state, v_state = '57014' AND pgjobs._statement_timed_out(v_armed));
        END;
        IF v_unjudged.message IS NOT NULL THEN
            PERFORM pgjobs.fail(p_id, p_worker,
                concat_ws('. ', v_unjudged.message, v_unjudged.hint), false);
            DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_id;
            RETURN 'failed';
        ELSIF v_unjudged.hint IS NOT NULL THEN
            RETURN 'blocked';
        ELSIF (SELECT j.payload ? 'unchecked_walk' FROM pgjobs.jobs j WHERE j.id = p_id) THEN
            -- The walk read its 100,000 rows for this call and goes on at the
            -- next (the place kept in the payload): no page before it ends.
            -- The lease is extended as a page's is (done unchanged): a walk
            -- of field_check_rows rows is ten such calls, and ran on the
            -- claim's lease alone, lost mid-walk on a slow scope.
            PERFORM pgjobs.heartbeat(p_id, p_worker);
            RETURN 'more';
        END IF;
    END IF;
    v_key_type := pgjobs._column_type(v_job.target, v_reg.key_column);
    v_filtered := coalesce(v_job.payload -> 'filter', '{}'::jsonb) <> '{}'::jsonb;

    v_size := coalesce((v_job.options ->> 'page_size')::integer,
                       (v_job.checkpoint ->> 'page_size')::integer, 1000);
    v_target_ms := coalesce((v_job.options ->> 'page_ms')::integer, 50);
    v_collect := coalesce(v_job.checkpoint ->> 'strategy' = 'collect', false);
    -- The most keys one call of the end-of-scope check walks (below): up to
    -- 4 pages' keys and 100,000, as walking a deleted row's entry (and
    -- visiting the row) costs about half of deleting it, and each call has
    -- its fixed cost and commit (at most 50,000: a call per page of a
    -- 500k-row scope, 2M rows, fsync on; the job took 1.9x a bulk DELETE
    -- instead of 1.4x in alternating runs; its check calls were no slower
    -- than its pages).
    v_budget := greatest(v_size, least(100000, 4 * v_size));

    -- A delete refreshes the target's statistics a few times while it
    -- churns it (pgjobs._maybe_analyze: when, and why). When one is due,
    -- this call runs just that ANALYZE, in a transaction of its own, and
    -- the page follows in the next call. It ran after the page, in the
    -- page's transaction: 50-70 ms of ANALYZE on a 50 ms page made that
    -- page's transaction the job's longest but the last (120 ms, a 500k-row
    -- scope of a 2M-row table, fsync on), and it is not a page's cost that
    -- the page size can adapt to.
    IF v_job.kind = 'delete' AND v_job.checkpoint IS NOT NULL THEN
        PERFORM set_config('lock_timeout', '200ms', true);
        v_checkpoint := pgjobs._maybe_analyze(v_job, v_reg.scope_column, v_job.done);
        -- Tried (analyzed, or skipped on a lock wait: that try waited out
        -- the lock_timeout): this call's work is done, the page follows.
        IF v_checkpoint ->> 'analyzed_done'
               IS DISTINCT FROM v_job.checkpoint ->> 'analyzed_done' THEN
            PERFORM pgjobs.heartbeat(p_id, p_worker, v_job.done,
                v_job.checkpoint || v_checkpoint || jsonb_build_object('verified', v_verified));
            RETURN 'more';
        END IF;
    END IF;

    -- Keys travel through the cursor as text: the function's own settings
    -- (DateStyle, IntervalStyle, extra_float_digits) read and write them in
    -- one fixed style, whatever the session's (pg_cron's, a client's).

    BEGIN
        IF v_job.checkpoint IS NULL THEN
            PERFORM set_config('jit', 'off', true);
            IF pgjobs._page_strategy(v_job, v_reg) = 'collect' THEN
                v_t0 := clock_timestamp();
                v_size := coalesce((v_job.options ->> 'page_size')::integer, 50000);
                v_rows := 0;
                v_total := NULL;
                IF coalesce(v_job.options ->> 'strategy', 'auto') = 'auto' THEN
                    -- The collection, and a job whose matches fit one page
                    -- (at most page_size, else 50,000, the largest page)
                    -- deletes them here instead: collected, they were read
                    -- three times in three calls (the collection, the page,
                    -- the sweep), the job 2.5-2.8x a bulk DELETE of 50,000
                    -- rows. One statement, so one snapshot: m finds the
                    -- matches through the index (bitmap scans, as
                    -- pgjobs._collect_matches does); d deletes them by
                    -- address (a TID scan) when they are at most a page,
                    -- each only if it still matches (a row updated since is
                    -- judged by its new version, as a page judges it); b
                    -- stores them as the collection when they are more.
                    -- When d deleted every row m found, no row of the
                    -- predicate is left in that snapshot, which is what the
                    -- sweep proves: the job ends here. A row d did not
                    -- delete (updated out of the filter or deleted by
                    -- another writer since, kept by a trigger): the rows d
                    -- deleted count as done, and the job collects the rest
                    -- and goes on as any collect job, sweep included. An
                    -- address names a row of any partition: d re-checks the
                    -- predicate, so a row at the same address in another
                    -- partition is deleted only if it is a match, which m
                    -- then holds too. A job that asked for the collect
                    -- strategy collects.
                    PERFORM set_config('lock_timeout', '200ms', true);
                    PERFORM set_config('enable_seqscan', 'off', true);
                    PERFORM set_config('enable_indexscan', 'off', true);
                    PERFORM set_config('enable_bitmapscan', 'on', true);
                    DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_id;
                    EXECUTE format($q$
                        WITH m AS MATERIALIZED (
                                 SELECT coalesce(array_agg(t.ctid), '{}') AS tids
                                   FROM %1$s t WHERE %2$s),
                             d AS (DELETE FROM %1$s WHERE %3$I = %4$s
                                      AND ctid = ANY ((SELECT m.tids FROM m)::tid[])
                                      AND (SELECT cardinality(m.tids) FROM m) <= %5$s
                                      AND coalesce((%2$s), false) RETURNING 1),
                             b AS (INSERT INTO pgjobs.job_batches (job_id, batch, tids)
                                   SELECT %6$s, n, m.tids[cardinality(m.tids) - n * 1000 - 999
                                                          : cardinality(m.tids) - n * 1000]
                                     FROM m, generate_series(0, (cardinality(m.tids) - 1) / 1000) n
                                    WHERE cardinality(m.tids) > %5$s)
                        SELECT cardinality(m.tids), (SELECT count(*) FROM d) FROM m$q$,
                        v_job.target, v_job.predicate, v_reg.scope_column,
                        pgjobs._scope_literal(v_reg, v_job.scope), v_size, p_id)
                       INTO v_found, v_rows;
                    PERFORM set_config('enable_seqscan', v_seqscan, true);
                    PERFORM set_config('enable_indexscan', v_indexscan, true);
                    PERFORM set_config('enable_bitmapscan', v_bitmapscan, true);
                    IF v_found <= v_size AND v_rows = v_found THEN
                        v_ms := extract(epoch FROM clock_timestamp() - v_t0) * 1000;
                        v_checkpoint := jsonb_build_object(
                            'strategy', 'collect', 'after', v_rows, 'collected', v_rows,
                            'pages', 1, 'page_size', v_size,
                            'last_page_ms', round(v_ms::numeric, 1), 'verified', v_verified,
                            'first_call_delete', true);
                        v_checkpoint := v_checkpoint
                            || pgjobs._maybe_analyze(v_job, v_reg.scope_column, v_rows);
                        UPDATE pgjobs.jobs SET total = v_rows WHERE id = p_id;
                        PERFORM pgjobs.heartbeat(p_id, p_worker, v_rows, v_checkpoint);
                        PERFORM pgjobs.complete(p_id, p_worker, jsonb_build_object(
                            'deleted', v_rows, 'pages', 1));
                        RETURN 'done';
                    ELSIF v_found > v_size THEN
                        v_total := v_found;  -- collected (b): nothing deleted
                    END IF;
                END IF;
                -- The matching rows, found once through the index; total is
                -- exact. The first page gets as many rows as the collection
                -- read in page_ms (deleting a row at a known address costs
                -- about what finding it did).
                IF v_total IS NULL THEN
                    v_total := pgjobs._collect_matches(v_job);
                END IF;
                v_ms := extract(epoch FROM clock_timestamp() - v_t0) * 1000;
                v_size := coalesce((v_job.options ->> 'page_size')::integer,
                                   least(50000, greatest(100,
                                       (v_total * v_target_ms / greatest(v_ms, 1.0))::integer)));
                UPDATE pgjobs.jobs SET total = v_rows + v_total WHERE id = p_id;
                PERFORM pgjobs.heartbeat(p_id, p_worker, v_rows, jsonb_build_object(
                    'strategy', 'collect', 'after', 0, 'collected', v_total, 'pages', 0,
                    'page_size', v_size, 'verified', v_verified));
                RETURN 'more';
            END IF;
            -- Before the first page: the denominator for progress and ETA.
            -- Exact under 100000 rows: when the planner puts the scope
            -- under that, the job's rows are counted (at most 100000 read,
            -- a few ms). A larger job is estimated from a sample of about
            -- 500 heap blocks instead (10-30 ms): an exact count would read
            -- every row of the scope once more, a third of the cost of the
            -- delete itself (and so did the 100000-row index count that used
            -- to decide: 0.28 s on a 2M-row table); only a table of at most
            -- 2000 pages (16 MB: where 500 blocks are a quarter of it) is
            -- counted all the same. (It was 20000 pages: a 500k-row scope of
            -- a 2M-row table was counted, 0.1-0.2 s before its first page.)
            -- The estimate is marked in the checkpoint, raised when done
            -- overtakes it and made exact (= done) at the end.
            v_scope := pgjobs._scope_literal(v_reg, v_job.scope);
            EXECUTE format('EXPLAIN (FORMAT JSON) SELECT FROM %s t WHERE t.%I = %s',
                           v_job.target, v_reg.scope_column, v_scope)
               INTO v_plan;
            v_estimated := (v_plan::jsonb -> 0 -> 'Plan' ->> 'Plan Rows')::double precision
                           >= 100000;
            IF NOT v_estimated THEN
                EXECUTE format('SELECT count(*) FROM (SELECT FROM %s WHERE %s LIMIT 100000) s',
                               v_job.target, v_job.predicate)
                   INTO v_total;
                v_estimated := v_total >= 100000;
            END IF;
            -- A partitioned target's pages are its leaves' (pgjobs._relation_pages).
            v_pages := pgjobs._relation_pages(v_job.target);
            IF v_estimated AND v_pages <= 2000 THEN
                EXECUTE format('SELECT count(*) FROM %s WHERE %s', v_job.target, v_job.predicate)
                   INTO v_total;
                v_estimated := false;
            ELSIF v_estimated THEN
                v_sample_pct := 100.0 * 500 / v_pages;
                EXECUTE format('SELECT count(*) FROM %s TABLESAMPLE SYSTEM (%s) WHERE %s',
                               v_job.target, v_sample_pct, v_job.predicate)
                   INTO v_total;
                v_total := round(v_total * 100.0 / v_sample_pct);
            END IF;
            UPDATE pgjobs.jobs SET total = v_total WHERE id = p_id;
            PERFORM pgjobs.heartbeat(p_id, p_worker, 0,
                jsonb_build_object('strategy', 'range', 'after', NULL, 'pages', 0,
                                   'page_size', v_size, 'verified', v_verified)
                || CASE WHEN v_estimated THEN '{"total_estimated": true}'::jsonb
                        ELSE '{}'::jsonb END);
            RETURN 'more';
        END IF;

        -- Page statements are short: compiling them with JIT costs more than
        -- it saves (the planner costs them on the whole scope's statistics).
        PERFORM set_config('jit', 'off', true);
        PERFORM set_config('lock_timeout', '200ms', true);
        -- No statement_timeout of its own: PostgreSQL arms that timer once,
        -- when the top-level statement (the CALL) starts, so a SET here
        -- arms none (the page's SET LOCAL statement_timeout = 30s, and 10
        -- min for a first call, never fired; docs/engine.md said they did).
        -- A page is bounded by its size (page_ms) and the runner's budget.
        v_t0 := clock_timestamp();

        IF v_collect THEN
            v_pos := (v_job.checkpoint ->> 'after')::bigint;
            v_collected := (v_job.checkpoint ->> 'collected')::bigint;
            IF v_pos < v_collected THEN
                -- The addresses at positions v_pos + 1 .. v_pos + v_size,
                -- a batch of 1000 at a time from the end of the heap back
                -- (the batches' order: pgjobs._collect_matches says why)
                -- (slices of their batches, concatenated: several times
                -- faster than unnesting them); the rows there that still
                -- match are the page. A TID scan (the only scan left
                -- enabled) fetches just those rows.
                v_tids := '{}';
                FOR v_batch IN
                    SELECT b.tids[greatest(1, v_pos - b.batch * 1000::bigint + 1)
                                  : least(1000, v_pos + v_size - b.batch * 1000::bigint)]
                      FROM pgjobs.job_batches b
                     WHERE b.job_id = p_id
                       AND b.batch BETWEEN v_pos / 1000 AND (v_pos + v_size - 1) / 1000
                     ORDER BY b.batch
                LOOP
                    v_tids := v_tids || v_batch;
                END LOOP;
                PERFORM set_config('enable_seqscan', 'off', true);
                PERFORM set_config('enable_indexscan', 'off', true);
                PERFORM set_config('enable_bitmapscan', 'off', true);
                -- The scope's equality stands outside coalesce(), so that a
                -- target partitioned by the scope prunes to its partitions
                -- (an address names a row of any partition).
                -- The addresses reach the TID scan through a sub-select (an
                -- InitPlan parameter), not as the array itself: handed the
                -- array, the planner estimates `ctid = ANY` element by
                -- element, 30-60 ms of planning for a page of 17,000
                -- addresses (a quarter of the page; issue 11).
                EXECUTE format('DELETE FROM %s WHERE %I = %s AND ctid = ANY ((SELECT $1)::tid[]) '
                               'AND coalesce((%s), false)',
                               v_job.target, v_reg.scope_column,
                               pgjobs._scope_literal(v_reg, v_job.scope), v_job.predicate)
                   USING v_tids;
                GET DIAGNOSTICS v_rows = ROW_COUNT;
                v_pos := least(v_pos + v_size, v_collected);
                v_last := false;
            ELSE
                -- The sweep: rows that match now but were not at their
                -- collected address (updated or moved since, updated into
                -- the filter, inserted with an old created_at). Found
                -- through the index again (bitmap scans only, whatever the
                -- planner thinks of the LIMIT): first counted, which may run
                -- in parallel (a DELETE may not), as there are usually none;
                -- then deleted a page at a time. The job ends in the
                -- transaction of a sweep that finds nothing or deletes less
                -- than a page (rows a trigger keeps are left, as a range job
                -- leaves them).
                v_sweep := true;
                PERFORM set_config('enable_seqscan', 'off', true);
                PERFORM set_config('enable_indexscan', 'off', true);
                PERFORM set_config('enable_bitmapscan', 'on', true);
                EXECUTE format('SELECT count(*) FROM %s WHERE %s', v_job.target, v_job.predicate)
                   INTO v_matching;
                v_rows := 0;
                v_last := v_matching = 0;
                IF NOT v_last THEN
                    EXECUTE format('DELETE FROM %1$s WHERE ctid = ANY (ARRAY(SELECT t.ctid '
                                   'FROM %1$s t WHERE %2$s LIMIT %3$s)) '
                                   'AND coalesce((%2$s), false)',
                                   v_job.target, v_job.predicate, v_size);
                    GET DIAGNOSTICS v_rows = ROW_COUNT;
                    IF v_rows = 0 THEN
                        -- Matching rows that a DELETE leaves (a BEFORE DELETE
                        -- trigger returning NULL, a rule): the job cannot
                        -- delete them, and must not report that it did.
                        PERFORM pgjobs.fail(p_id, p_worker, format(
                            '%s rows of %s match the job but were not deleted (a trigger or '
                            'rule on the table keeps them); the job deleted %s rows',
                            v_matching, v_job.target, v_job.done), false);
                        DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_id;
                        RETURN 'failed';
                    END IF;
                    v_last := v_rows = v_matching;
                END IF;
            END IF;
        ELSIF v_job.checkpoint ? 'check_after' THEN
            -- A call of the end-of-scope check of an unfiltered range delete
            -- (see the last page below): one segment of the walk, or a stretch
            -- of at most v_budget keys of it, from the check's cursor
            -- (check_after, NULL: the start of the scope); or, once the
            -- segments are all covered (check_next NULL), the whole scope in
            -- one snapshot. The settings make every read here a plain index
            -- scan of the (scope, key) index in its order (the scope as a
            -- one-element ANY and the predicate inside coalesce(): no
            -- equality that would let another index deliver key order; see
            -- pgjobs._nth_key).
            v_checking := true;
            v_after := v_job.checkpoint ->> 'after';
            v_scope := pgjobs._scope_literal(v_reg, v_job.scope);
            v_bounds := v_job.checkpoint -> 'check_bounds';
            v_spans := v_job.checkpoint -> 'check_spans';
            v_next := (v_job.checkpoint ->> 'check_next')::integer;
            v_check_after := v_job.checkpoint ->> 'check_after';
            PERFORM set_config('enable_seqscan', 'off', true);
            PERFORM set_config('enable_bitmapscan', 'off', true);
            PERFORM set_config('enable_indexscan', 'on', true);
            PERFORM set_config('enable_sort', 'off', true);
            PERFORM set_config('enable_incremental_sort', 'off', true);
            IF v_next IS NULL THEN
                -- Every segment checked, each in its own snapshot: a row
                -- inserted behind the check's cursor meanwhile was missed.
                -- So, as the one check in the last page's transaction did
                -- before, the whole scope in one snapshot, which now costs
                -- little: the segments' walks marked the entries of the rows
                -- the job deleted dead, and this scan skips them in the
                -- index without visiting their rows. Something left: sweep.
                EXECUTE format('SELECT coalesce((SELECT true FROM %1$s t WHERE t.%3$I = ANY (ARRAY[%5$s]) '
                               'AND coalesce((%2$s), false) ORDER BY t.%3$I, t.%4$I LIMIT 1), false)',
                               v_job.target, v_job.predicate, v_reg.scope_column,
                               v_reg.key_column, v_scope)
                   INTO v_left;
                v_last := NOT v_left;
                IF v_left THEN
                    v_collect := true;
                    v_pos := 0;
                    v_collected := 0;
                END IF;
                v_check := jsonb_build_object('check_steps',
                    coalesce((v_job.checkpoint ->> 'check_steps')::integer, 0) + 1);
            ELSE
                -- The segment's upper end (NULL: the tail, past the walk's
                -- last recorded bound), and the step's: the v_budget-th key
                -- of it, if it holds more (rows inserted meanwhile). The walk
                -- to it is index-only, and visits the row of each entry whose
                -- heap page is not all-visible, as those of the deleted rows
                -- are: it marks their entries dead as it passes them (as any
                -- index scan does), at most the segment's keys, so every read
                -- of the scope after it (the next statement included) skips
                -- them.
                v_segment_upper := CASE WHEN v_next < jsonb_array_length(v_bounds)
                                        THEN v_bounds ->> v_next END;
                v_check_upper := pgjobs._nth_key(v_job.target, v_reg.scope_column, v_scope,
                    v_reg.key_column,
                    concat(CASE WHEN v_check_after IS NOT NULL THEN
                                    format(' AND t.%I > %L::%s', v_reg.key_column,
                                           v_check_after, v_key_type) END,
                           CASE WHEN v_segment_upper IS NOT NULL THEN
                                    format(' AND t.%I <= %L::%s', v_reg.key_column,
                                           v_segment_upper, v_key_type) END),
                    v_budget - 1);
                v_check := jsonb_build_object('check_keys',
                    CASE WHEN v_next < jsonb_array_length(v_bounds) THEN v_spans -> v_next
                         ELSE v_job.checkpoint -> 'check_span' END);
                IF v_check_upper IS NULL THEN
                    v_check_upper := v_segment_upper;
                    v_next := v_next + 1;
                END IF;
                v_range := concat_ws(' AND ',
                    CASE WHEN v_check_after IS NOT NULL THEN
                        format('t.%I > %L::%s', v_reg.key_column, v_check_after, v_key_type) END,
                    CASE WHEN v_check_upper IS NOT NULL THEN
                        format('t.%I <= %L::%s', v_reg.key_column, v_check_upper, v_key_type) END);
                EXECUTE format('SELECT coalesce((SELECT true FROM %1$s t WHERE t.%3$I = ANY (ARRAY[%5$s]) '
                               '%6$s AND coalesce((%2$s), false) ORDER BY t.%3$I, t.%4$I LIMIT 1), false)',
                               v_job.target, v_job.predicate, v_reg.scope_column,
                               v_reg.key_column, v_scope,
                               CASE WHEN v_range <> '' THEN 'AND ' || v_range END)
                   INTO v_left;
                IF v_left THEN
                    -- Rows the walk could not see: deleted as a page deletes.
                    PERFORM set_config('enable_seqscan', v_seqscan, true);
                    PERFORM set_config('enable_bitmapscan', 'on', true);
                    PERFORM set_config('enable_indexscan', 'off', true);
                    EXECUTE format('DELETE FROM %s t WHERE t.%I = %s%s AND coalesce((%s), false)',
                                   v_job.target, v_reg.scope_column, v_scope,
                                   CASE WHEN v_range <> '' THEN ' AND ' || v_range END,
                                   v_job.predicate);
                    GET DIAGNOSTICS v_rows = ROW_COUNT;
                END IF;
                v_check := v_check || jsonb_build_object(
                    'check_after', v_check_upper,
                    -- Past the end of the scope: the whole-scope look is next.
                    'check_next', CASE WHEN v_check_upper IS NOT NULL THEN v_next END,
                    'check_steps', coalesce((v_job.checkpoint ->> 'check_steps')::integer, 0) + 1,
                    'check_bounds', v_bounds, 'check_spans', v_spans,
                    'check_span', v_job.checkpoint -> 'check_span');
                v_last := false;
            END IF;
            PERFORM set_config('enable_sort', v_sort, true);
            PERFORM set_config('enable_incremental_sort', v_incremental_sort, true);
        ELSE
            -- The page's upper bound: the v_size-th key after the cursor, read
            -- from the (scope, key) index alone; NULL: this is the last page.
            v_after := v_job.checkpoint ->> 'after';
            v_scope := pgjobs._scope_literal(v_reg, v_job.scope);
            v_upper := pgjobs._nth_key(v_job.target, v_reg.scope_column, v_scope,
                                       v_reg.key_column,
                                       CASE WHEN v_after IS NULL THEN ''
                                            ELSE format(' AND t.%I > %L::%s', v_reg.key_column,
                                                        v_after, v_key_type) END,
                                       v_size - 1);
            v_last := v_upper IS NULL;
            -- The cursor must move: a key whose text does not read back as
            -- the same value would repeat this page forever (the one check
            -- of every keyset walk, pgjobs._cursor_stuck).
            v_detail := pgjobs._cursor_stuck(v_job.target, v_reg.key_column, v_key_type,
                                             v_after, v_upper);
            IF v_detail IS NOT NULL THEN
                PERFORM pgjobs.fail(p_id, p_worker, v_detail, false);
                DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_id;
                RETURN 'failed';
            END IF;
            v_range := concat_ws(' AND ',
                format('%I = %s', v_reg.scope_column, v_scope),
                CASE WHEN v_after IS NOT NULL THEN
                    format('%I > %L::%s', v_reg.key_column, v_after, v_key_type) END,
                CASE WHEN v_upper IS NOT NULL THEN
                    format('%I <= %L::%s', v_reg.key_column, v_upper, v_key_type) END);
            -- The page statement reads the range through a bitmap scan of the
            -- (scope, key) index, in heap order, and evaluates the predicate
            -- on each row. No plain index scans: one would be costed on the
            -- correlation of the scope column (poor in a shared relation), so
            -- the planner would rather walk a key-only index such as the
            -- primary key over every scope's rows of the key range. And the
            -- predicate goes in as coalesce(...), which no index matches:
            -- otherwise the planner ANDs the range with a GIN lookup of the
            -- filter over the whole scope, which costs as much on every
            -- page, however small (9x the bulk DELETE on the benchmark).
            PERFORM set_config('enable_indexscan', 'off', true);

            IF v_job.kind = 'delete' THEN
                EXECUTE format('DELETE FROM %s WHERE %s AND coalesce((%s), false)',
                               v_job.target, v_range, v_job.predicate);
                GET DIAGNOSTICS v_rows = ROW_COUNT;
                v_trailing := NOT v_filtered
                    AND (v_job.checkpoint ? 'checked_to'
                         OR (v_after IS NULL AND NOT v_job.checkpoint ? 'check_bounds'));
                IF v_trailing THEN
                    -- The end-of-scope check, trailing the walk by a page:
                    -- this page also looks at the keys the pages before it
                    -- deleted and no page has looked at since (checked_to,
                    -- NULL: the start of the scope; up to this page's
                    -- cursor), for a matching row the walk could not see,
                    -- and deletes what it finds as a page would. Those rows
                    -- died in the previous page's transaction, so the look
                    -- (a plain index scan of the (scope, key) index, as the
                    -- check's) marks their entries dead as it passes them,
                    -- and their heap pages, which that page just read and
                    -- wrote, are still in shared buffers. Walked after the
                    -- last page instead (a segment of the walk per call,
                    -- below, for jobs that started under the release before
                    -- this one), the same look read them back from the OS
                    -- and took 147 ms in 7 calls for a 500k-row scope of a
                    -- 2M-row table (0.26 s bulk DELETE), where a walk of
                    -- 50,000 keys right after their page takes 9-10 ms.
                    -- After the last page, only that page's keys are left
                    -- unlooked-at: the whole-scope look that ends every
                    -- check (one snapshot) covers them too.
                    v_check_after := v_job.checkpoint ->> 'checked_to';
                    IF v_after IS NOT NULL THEN
                        v_range := concat_ws(' AND ',
                            CASE WHEN v_check_after IS NOT NULL THEN
                                format('t.%I > %L::%s', v_reg.key_column, v_check_after,
                                       v_key_type) END,
                            format('t.%I <= %L::%s', v_reg.key_column, v_after, v_key_type));
                        PERFORM set_config('enable_seqscan', 'off', true);
                        PERFORM set_config('enable_bitmapscan', 'off', true);
                        PERFORM set_config('enable_indexscan', 'on', true);
                        PERFORM set_config('enable_sort', 'off', true);
                        PERFORM set_config('enable_incremental_sort', 'off', true);
                        EXECUTE format('SELECT coalesce((SELECT true FROM %1$s t WHERE t.%3$I = ANY (ARRAY[%5$s]) '
                                       'AND %6$s AND coalesce((%2$s), false) ORDER BY t.%3$I, t.%4$I LIMIT 1), false)',
                                       v_job.target, v_job.predicate, v_reg.scope_column,
                                       v_reg.key_column, v_scope, v_range)
                           INTO v_left;
                        PERFORM set_config('enable_sort', v_sort, true);
                        PERFORM set_config('enable_incremental_sort', v_incremental_sort, true);
                        PERFORM set_config('enable_seqscan', v_seqscan, true);
                        PERFORM set_config('enable_bitmapscan', 'on', true);
                        PERFORM set_config('enable_indexscan', 'off', true);
                        IF v_left THEN
                            -- Rows the walk could not see: deleted as a page deletes.
                            EXECUTE format('DELETE FROM %s t WHERE t.%I = %s AND %s '
                                           'AND coalesce((%s), false)',
                                           v_job.target, v_reg.scope_column, v_scope, v_range,
                                           v_job.predicate);
                            GET DIAGNOSTICS v_behind = ROW_COUNT;
                            v_rows := v_rows + v_behind;
                        END IF;
                        v_left := false;
                    END IF;
                    v_check := jsonb_build_object('checked_to', v_after);
                ELSIF NOT v_filtered THEN
                    -- The segments of the walk, for the end-of-scope check:
                    -- runs of consecutive pages of at most v_budget keys in
                    -- all (a page of more is one alone), each closed at a
                    -- page's cursor (check_bounds) with its keys
                    -- (check_spans); check_span: the keys since the last
                    -- bound. A job that walked part of its scope under a
                    -- release without them starts with one segment up to its
                    -- cursor, of unknown size.
                    v_bounds := coalesce(v_job.checkpoint -> 'check_bounds',
                        CASE WHEN v_after IS NULL THEN '[]'::jsonb
                             ELSE jsonb_build_array(v_after) END);
                    v_spans := coalesce(v_job.checkpoint -> 'check_spans',
                        CASE WHEN v_after IS NULL THEN '[]'::jsonb
                             ELSE '[null]'::jsonb END);
                    v_span := coalesce((v_job.checkpoint ->> 'check_span')::bigint, 0);
                    IF v_span > 0 AND v_span + v_size > v_budget THEN
                        v_bounds := v_bounds || to_jsonb(v_after);
                        v_spans := v_spans || to_jsonb(v_span);
                        v_span := 0;
                    END IF;
                    v_check := jsonb_build_object('check_bounds', v_bounds, 'check_spans', v_spans,
                                                  'check_span', v_span + v_size);
                END IF;
                IF v_last AND NOT v_filtered
                   AND (v_after IS NULL
                        OR (CASE WHEN v_trailing THEN true
                                 ELSE jsonb_array_length(v_bounds) = 0 END
                            AND v_job.done + v_rows <= 2 * v_size)) THEN
                    -- A small scope (walked in one page, or its rows at most
                    -- two pages' keys): checked here, as the whole-scope look
                    -- of the check below, in this page's transaction. The
                    -- look visits the entry of every row the job deleted, at
                    -- about half the cost of deleting it, so this page costs
                    -- at most about two full pages; the calls of the check's
                    -- own (a segment, then the look: two more transactions
                    -- and commits) were 2 of a 2,000-row delete's 5 calls.
                    PERFORM set_config('enable_seqscan', 'off', true);
                    PERFORM set_config('enable_bitmapscan', 'off', true);
                    PERFORM set_config('enable_indexscan', 'on', true);
                    PERFORM set_config('enable_sort', 'off', true);
                    PERFORM set_config('enable_incremental_sort', 'off', true);
                    EXECUTE format('SELECT coalesce((SELECT true FROM %1$s t WHERE t.%3$I = ANY (ARRAY[%5$s]) '
                                   'AND coalesce((%2$s), false) ORDER BY t.%3$I, t.%4$I LIMIT 1), false)',
                                   v_job.target, v_job.predicate, v_reg.scope_column,
                                   v_reg.key_column, v_scope)
                       INTO v_left;
                    PERFORM set_config('enable_sort', v_sort, true);
                    PERFORM set_config('enable_incremental_sort', v_incremental_sort, true);
                    IF v_left THEN
                        v_last := false;
                        v_collect := true;
                        v_pos := 0;
                        v_collected := 0;
                    END IF;
                ELSIF v_last AND NOT v_filtered THEN
                    -- The end of the scope: does anything still match (a row
                    -- the walk could not see: inserted behind the cursor)?
                    -- Then delete it, not succeed. Checked in calls of their
                    -- own that follow (above), a segment of the walk each,
                    -- not here: one look at the whole scope, in this page's
                    -- transaction, walked every entry of the rows the job
                    -- had just deleted (each visiting its dead row) and made
                    -- this the job's longest page (0.15-0.18 s for a
                    -- 500k-row scope of a 2M-row table, fsync on; issue 11).
                    -- Walked through a plain index scan of the (scope, key)
                    -- index, the check marks those entries dead in the index
                    -- as it passes them (a bitmap scan cannot), so the reads
                    -- of the scope that follow skip them instead of visiting
                    -- each dead row again until vacuum.
                    -- A job that checked as it walked (above) goes straight
                    -- to the whole-scope look (check_next NULL), which also
                    -- covers the last page's keys.
                    v_last := false;
                    v_check := v_check || jsonb_build_object(
                        'check_after', NULL,
                        'check_next', CASE WHEN v_trailing THEN NULL ELSE 0 END,
                        'check_steps', 0);
                ELSIF v_last THEN
                    -- A job with a filter checks at its last page, through
                    -- bitmap scans: the walk above would read every row of the
                    -- scope again to test the filter on it, where an index
                    -- that narrows the filter (the btree_gin (scope, document)
                    -- one) hands over just the candidates (20% of a 250k-row
                    -- scope: 0.20 s against 0.42-0.55 s); without such an
                    -- index the bitmap of the (scope, key) index reads what
                    -- the walk would. Something left: sweep.
                    PERFORM set_config('enable_seqscan', 'off', true);
                    PERFORM set_config('enable_bitmapscan', 'on', true);
                    PERFORM set_config('enable_indexscan', 'off', true);
                    EXECUTE format('SELECT EXISTS (SELECT FROM %1$s t WHERE %2$s)',
                                   v_job.target, v_job.predicate)
                       INTO v_left;
                    IF v_left THEN
                        v_last := false;
                        v_collect := true;
                        v_pos := 0;
                        v_collected := 0;
                    END IF;
                END IF;
            ELSIF v_job.payload ->> 'handler' IS NOT NULL THEN
                -- Its owner may have replaced it or passed it on since the submit.
                PERFORM pgjobs._require_handler_trusted(
                    (v_job.payload ->> 'handler')::regprocedure);  -- 42501
                EXECUTE format('SELECT %s(%L::regclass, ARRAY(SELECT t.%I::text FROM %s t '
                               'WHERE %s AND coalesce((%s), false) ORDER BY t.%I))',
                               (v_job.payload ->> 'handler')::regprocedure::oid::regproc,
                               v_job.target, v_reg.key_column, v_job.target, v_range,
                               v_job.predicate, v_reg.key_column)
                   INTO v_rows;
            ELSE
                -- Every row updated must still be in the job's scope: a
                -- BEFORE trigger that computes the scope from a column the
                -- set writes would otherwise move it to another tenant
                -- (pgjobs._refuse_scope_move, 22023: the page is undone and
                -- the job fails). The check runs only for such a row.
                -- A BEFORE UPDATE row trigger that returns NULL keeps a row
                -- out of the UPDATE, which then simply counts one row fewer:
                -- the job succeeded with rows of its predicate never set
                -- (a delete fails on such rows; a backfill did not). Where
                -- the target, or any table under it, has such a trigger,
                -- the page's rows are counted and locked first, so no other
                -- writer changes the count before the UPDATE; an UPDATE
                -- that sets fewer raises 27000 (the page is undone, the job
                -- fails for good, as a delete does). A table without one
                -- pays one catalog look per page.
                -- Rows whose document holds a scalar or an array where the
                -- set merges fields in (pgjobs._set_guard) are left out of
                -- the UPDATE, unless the job says replace_non_objects: the
                -- set would replace a value it does not name. They are
                -- counted after it (the page's keys again, read only) and
                -- reported in the checkpoint, the result and the events
                -- (skipped), so nothing is left unset without a word.
                IF NOT coalesce((v_job.options ->> 'replace_non_objects')::boolean, false) THEN
                    SELECT g.p_ok, g.p_blocker INTO v_guard_ok, v_guard_blocker
                      FROM pgjobs._set_guard(v_reg, v_job.payload -> 'set') g;
                END IF;
                v_matching := NULL;
                IF EXISTS (WITH RECURSIVE tree(rel) AS (
                               SELECT v_job.target::oid
                               UNION
                               SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                                 JOIN tree ON i.inhparent = tree.rel)
                           SELECT FROM pg_catalog.pg_trigger g JOIN tree ON g.tgrelid = tree.rel
                            WHERE g.tgtype::integer & 19 = 19  -- ROW, BEFORE, UPDATE
                              AND g.tgenabled <> 'D' AND NOT g.tgisinternal) THEN
                    EXECUTE format('SELECT count(*), array_agg(s.tableoid), array_agg(s.ctid) '
                                   'FROM (SELECT tableoid::oid, ctid FROM %s WHERE %s '
                                   'AND coalesce((%s), false)%s FOR UPDATE) s',
                                   v_job.target, v_range, v_job.predicate,
                                   CASE WHEN v_guard_ok IS NOT NULL
                                        THEN ' AND ' || v_guard_ok ELSE '' END)
                       INTO v_matching, v_locked_oids, v_locked_tids;
                END IF;
                -- A row of the predicate that the guard keeps out is
                -- noted as the UPDATE passes it (pgjobs.guard_missed, set
                -- only then: an OR and an AND evaluate their arms in order,
                -- and the planner may test the guard before the predicate,
                -- so the note tests the predicate again), so the
                -- count below runs only for a page that left some out.
                -- Counted every time a page set fewer rows than its range
                -- holds keys, it read a filtered backfill's every page
                -- twice (2.2x a plain UPDATE where 20% of the scope
                -- matched; 1.5-1.7x the job of the release before the
                -- guard).
                IF v_guard_ok IS NOT NULL THEN
                    PERFORM set_config('pgjobs.guard_missed', '', true);
                END IF;
                EXECUTE format('UPDATE %s SET %s WHERE %s AND coalesce((%s), false)%s '
                               'RETURNING CASE WHEN %I IS DISTINCT FROM %s THEN '
                               'pgjobs._refuse_scope_move(%L::regclass, %L, %I::text) END',
                               v_job.target, v_job.assignments, v_range, v_job.predicate,
                               CASE WHEN v_guard_ok IS NOT NULL
                                    THEN format(' AND (%s OR (coalesce((%s), false) AND '
                                                'pg_catalog.set_config(''pgjobs.guard_missed'', '
                                                '''yes'', true) IS NULL))',
                                                v_guard_ok, v_job.predicate)
                                    ELSE '' END,
                               v_reg.scope_column, v_scope, v_job.target::text, v_job.scope,
                               v_reg.scope_column);
                GET DIAGNOSTICS v_rows = ROW_COUNT;
                -- The page's rows the guard kept out, counted (and the
                -- first of them named) only when the UPDATE noted one.
                IF v_guard_ok IS NOT NULL
                   AND current_setting('pgjobs.guard_missed', true) = 'yes' THEN
                    EXECUTE format('SELECT count(*) OVER () AS n, %1$I::pg_catalog.text AS k, %2$s AS b '
                                   'FROM %3$s WHERE %4$s AND coalesce((%5$s), false) '
                                   'AND NOT %6$s ORDER BY %1$I LIMIT 1',
                                   v_reg.key_column, v_guard_blocker, v_job.target, v_range,
                                   v_job.predicate, v_guard_ok)
                       INTO v_skip_rows, v_skip_key, v_skip_blocker;
                    IF v_skip_rows > 0 THEN
                        v_skip := coalesce(v_job.checkpoint -> 'skipped',
                                           jsonb_build_object(
                                               'rows', 0, 'reason', 'not_an_object',
                                               'key', v_skip_key,
                                               'path', v_skip_blocker ->> 0,
                                               'type', v_skip_blocker ->> 1))
                                  || jsonb_build_object(
                                         'rows', coalesce((v_job.checkpoint -> 'skipped'
                                                           ->> 'rows')::bigint, 0)
                                                 + v_skip_rows);
                    END IF;
                END IF;
                IF v_rows < v_matching THEN
                    -- The rows the UPDATE passed over are those still where
                    -- they were locked (an updated row is a new version, the
                    -- old one dead to this statement). One the set would not
                    -- change is no kept row: it already holds what the job
                    -- writes (PostgreSQL's suppress_redundant_updates_trigger
                    -- returns NULL for exactly those, and failed a backfill
                    -- over rows partly set before). Which would change: the
                    -- set applied to a trigger-less copy of them. Looked at
                    -- only when the UPDATE set fewer rows than were locked.
                    EXECUTE format('SELECT count(*) FROM %s t WHERE t.ctid = ANY ($1) '
                                   'AND (t.tableoid::oid, t.ctid) IN (SELECT * FROM unnest($2, $1))',
                                   v_job.target)
                       USING v_locked_tids, v_locked_oids INTO v_matching;
                    IF v_matching > 0 THEN
                        SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum)
                          INTO v_columns
                          FROM pg_catalog.pg_attribute a
                         WHERE a.attrelid = v_job.target AND a.attnum > 0
                           AND NOT a.attisdropped;
                        -- The copy is a temporary table: a runner's role
                        -- without TEMPORARY on the database failed here
                        -- with PostgreSQL's bare 42501 (hV review).
                        IF NOT has_database_privilege(current_database(), 'TEMPORARY') THEN
                            RAISE EXCEPTION 'backfill job % cannot tell whether the % rows a '
                                            'BEFORE UPDATE trigger of % passed over need the '
                                            'change: role % may not create temporary tables '
                                            'in database % (%)', p_id, v_matching, v_job.target,
                                            current_user, current_database(),
                                            format('GRANT TEMPORARY ON DATABASE %I TO %I',
                                                   current_database(), current_user)
                                USING ERRCODE = '42501',
                                HINT = format('GRANT TEMPORARY ON DATABASE %I TO %I; then '
                                              'pgjobs.retry the job (docs/operations.md, Roles).',
                                              current_database(), current_user);
                        END IF;
                        -- The copy's own column, for each row's text
                        -- before the set: a name no column of the target
                        -- has (a target column pgjobs_before failed the
                        -- copy, 42701: hV review).
                        v_before := 'pgjobs_before';
                        WHILE EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                       WHERE a.attrelid = v_job.target AND a.attname = v_before)
                        LOOP
                            v_before := v_before || '_';
                        END LOOP;
                        DROP TABLE IF EXISTS pg_temp.pgjobs_backfill_kept;
                        EXECUTE format('CREATE TEMP TABLE pgjobs_backfill_kept ON COMMIT DROP AS '
                                       'SELECT %1$s, ROW(%1$s)::text AS %5$I FROM %2$s t '
                                       'WHERE t.ctid = ANY (%3$L::tid[]) AND (t.tableoid::oid, t.ctid) '
                                       'IN (SELECT * FROM unnest(%4$L::oid[], %3$L::tid[]))',
                                       v_columns, v_job.target, v_locked_tids, v_locked_oids,
                                       v_before);
                        EXECUTE format('WITH u AS (UPDATE pg_temp.pgjobs_backfill_kept SET %s '
                                       'RETURNING ROW(%s)::text IS DISTINCT FROM %I AS d) '
                                       'SELECT count(*) FROM u WHERE u.d',
                                       v_job.assignments, v_columns, v_before)
                           INTO v_matching;
                        DROP TABLE IF EXISTS pg_temp.pgjobs_backfill_kept;
                    END IF;
                ELSE
                    v_matching := 0;
                END IF;
                IF v_matching > 0 THEN
                    RAISE EXCEPTION '% of the rows of % in this page of the backfill were not '
                                    'updated (a BEFORE UPDATE trigger on the table returned NULL '
                                    'for them); the job updated % rows before this page',
                                    v_matching, v_job.target, v_job.done
                        USING ERRCODE = '27000',
                        HINT = 'A trigger of the target keeps these rows: the job cannot set them '
                               'and does not report that it did. Change the trigger, or narrow '
                               'the filter to the rows it lets through, and submit again.';
                END IF;
            END IF;
        END IF;
        PERFORM set_config('enable_indexscan', v_indexscan, true);
        PERFORM set_config('enable_seqscan', v_seqscan, true);
        PERFORM set_config('enable_bitmapscan', v_bitmapscan, true);
    EXCEPTION
        WHEN lock_not_available THEN
            -- Someone holds locks on rows of this page: keep the lease, try
            -- the page again shortly; give up (retryably) after ~1000 waits.
            -- The waits were silent, and the failure said neither what nor
            -- who: they are named here.
            v_waits := coalesce((coalesce(v_job.checkpoint, v_first_note) ->> 'lock_waits')
                                ::integer, 0);
            v_holders := pgjobs._table_holders(v_job.target, true);
            IF v_holders IS NOT NULL THEN
                -- The table itself is held (a LOCK TABLE ... SHARE, a CREATE
                -- INDEX not yet committed; or one of its partitions, or such
                -- a request is queued): as long as its holder likes, so
                -- the caller hands the job back (pgjobs._table_hand_back)
                -- rather than retry the page for its whole budget and fail
                -- the attempt after 1000 waits. Nothing of the page is kept.
                RETURN 'blocked';
            END IF;
            v_detail := format('rows of %s in its page, which another transaction holds (an '
                               'UPDATE, DELETE or SELECT ... FOR UPDATE not yet committed?)',
                               v_job.target);
            IF v_waits >= 1000 THEN
                PERFORM pgjobs.fail(p_id, p_worker,
                    format('gave up after 1000 lock waits on one page: it waited for %s',
                           v_detail), true);
                RETURN 'failed';
            END IF;
            IF v_waits % 100 = 0 THEN
                RAISE WARNING 'pgjobs: job % waits for a lock (wait % of at most 1000 on this '
                              'page): %', p_id, v_waits + 1, v_detail
                    USING HINT = 'The page is tried again every 0.25 s or so and the job goes '
                                 'on once that transaction ends; if it does not, end it: '
                                 'SELECT pg_terminate_backend(pid) (a row''s holder: look '
                                 'for a long transaction in pg_stat_activity).';
            END IF;
            PERFORM pgjobs.heartbeat(p_id, p_worker, NULL,
                coalesce(v_job.checkpoint, v_first_note, '{}'::jsonb)
                || jsonb_build_object('lock_waits', v_waits + 1));
            RETURN 'retry';
        WHEN query_canceled OR OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_detail = MESSAGE_TEXT;
            -- A statement_timeout or a user's cancel: told by time, never by
            -- the message, which follows lc_messages (a timeout on a server
            -- with translated messages counted as a user's cancel).
            v_timed_out := v_state = '57014' AND pgjobs._statement_timed_out(v_armed);
            -- Which statement_timeout: the job's error said only 'canceling
            -- statement due to statement timeout', and operators looked at
            -- the page's 30 s when their role's or database's setting, which
            -- times the whole CALL, had ended it (pgjobs._run_deadline). That
            -- one is the only timer running: the page's own SET arms none.
            IF v_timed_out THEN
                v_detail := v_detail || format(': the statement_timeout (%s) of the session '
                            'running the page, which times a whole CALL pgjobs.run or run_job '
                            'from its start: set none for the role the engine runs as (ALTER '
                            'ROLE ... SET statement_timeout = 0)', v_armed);
            END IF;
            -- Transient classes retry with backoff; data errors do not.
            -- Collected addresses serve a retry; a job that ended needs none.
            RETURN pgjobs._fail_attempt(p_id, p_worker,
                                        format('%s (SQLSTATE %s)', v_detail, v_state), v_state,
                                        v_timed_out);
    END;

    v_ms := extract(epoch FROM clock_timestamp() - v_t0) * 1000;
    -- The next page's size: this one's, times page_ms / this page's time.
    -- A sweep costs an index lookup whatever its size: it says nothing
    -- about the page size. A page's time is a fixed part (planning its
    -- statements, the bound's index walk) plus a part per key, so the
    -- proportional step lands on page_ms or short of it, never past it,
    -- as long as the keys ahead cost what these did. They may not (a
    -- filter that matches further on, a colder part of the heap): so a
    -- step is at most 4x (and at least 0.5x), and a page at most 50000
    -- keys. Except the step after a range job's first page, at most 16x:
    -- that page has 1000 keys (the pessimistic start that keeps a first
    -- page of a wide or slow table short), and climbing from it at 4x took
    -- short pages (1000, 4000, 16000, ...), each with its own transaction,
    -- commit and checks, to reach page_ms (13 pages for a 500k-row scope,
    -- up to 5 of them the climb). Not more than 16x: a first page of 1-2 ms
    -- says little about the keys after it, and let through to 50x, the
    -- job's page p99 rose from 80-133 ms to 124-174 ms (paired runs of
    -- bench/delete.py, 500k of 2M rows, fsync on). 16000 keys is where the
    -- 4x climb stood at its third page anyway.
    -- (A collect job's first page is sized by its
    -- collection's time instead, and steps as the others.) The first page
    -- is not made larger from the first call's count: a count reads rows,
    -- and a delete costs a read plus what no count sees (indexes,
    -- triggers, WAL), so a rate taken from the count would bound nothing.
    IF NOT v_job.options ? 'page_size' AND NOT v_sweep AND NOT v_checking THEN
        v_size := least(50000, greatest(100,
            (v_size * least(CASE WHEN (v_job.checkpoint ->> 'pages')::bigint = 0
                                      AND NOT v_collect THEN 16.0 ELSE 4.0 END,
                            greatest(0.5, v_target_ms / greatest(v_ms, 1.0))))::integer));
    END IF;
    v_checkpoint := jsonb_build_object(
        'strategy', CASE WHEN v_collect THEN 'collect' ELSE 'range' END,
        'after', CASE WHEN v_collect THEN to_jsonb(v_pos)
                      ELSE to_jsonb(coalesce(v_upper, v_after)) END,
        'pages', coalesce((v_job.checkpoint ->> 'pages')::bigint, 0)
                 + CASE WHEN v_checking THEN 0 ELSE 1 END,
        'page_size', v_size,
        'last_page_ms', round(v_ms::numeric, 1),
        'verified', v_verified)
        || CASE WHEN v_collect
                THEN jsonb_build_object('collected', v_collected) ELSE '{}'::jsonb END
        || CASE WHEN v_job.checkpoint ? 'total_estimated'
                THEN jsonb_build_object('total_estimated', true) ELSE '{}'::jsonb END
        || CASE WHEN v_collect THEN '{}'::jsonb ELSE v_check END
        -- A backfill's rows left unchanged (see its UPDATE), carried over.
        || CASE WHEN coalesce(v_skip, v_job.checkpoint -> 'skipped') IS NOT NULL
                THEN jsonb_build_object('skipped',
                                        coalesce(v_skip, v_job.checkpoint -> 'skipped'))
                ELSE '{}'::jsonb END;
    IF ((v_job.checkpoint ? 'total_estimated' OR v_collect OR v_checking) AND v_last)
       OR v_job.done + v_rows > v_job.total THEN
        -- No total trails done (rows the end-of-scope check found behind the
        -- cursor, in a page's look or a call of its own, add to done); an
        -- estimated one is exact at the end; so is a collected one (rows
        -- updated meanwhile may change the count), and one the check's calls
        -- added rows to.
        UPDATE pgjobs.jobs SET total = v_job.done + v_rows WHERE id = p_id;
    END IF;
    -- The job's ANALYZE schedule (see above), carried over.
    v_checkpoint := v_checkpoint
        || CASE WHEN v_job.checkpoint ? 'analyzed_done'
                THEN jsonb_build_object('analyzes', v_job.checkpoint -> 'analyzes',
                                        'analyzed_done', v_job.checkpoint -> 'analyzed_done')
                ELSE '{}'::jsonb END
        || CASE WHEN v_job.checkpoint ? 'analyze_skips'
                THEN jsonb_build_object('analyze_skips', v_job.checkpoint -> 'analyze_skips')
                ELSE '{}'::jsonb END;
    -- ... except after the last page, which no call follows: one due then
    -- runs here, in the last page's transaction, or the job would end with
    -- the statistics still counting its rows, and the reads after it would
    -- plan on them (test_a_mass_delete_refreshes_the_scope_statistics).
    IF v_last AND v_job.kind = 'delete' THEN
        v_checkpoint := v_checkpoint
            || pgjobs._maybe_analyze(v_job, v_reg.scope_column, v_job.done + v_rows);
    END IF;
    PERFORM pgjobs.heartbeat(p_id, p_worker, v_job.done + v_rows, v_checkpoint);

    IF v_last THEN
        PERFORM pgjobs.complete(p_id, p_worker, jsonb_build_object(
            CASE v_job.kind WHEN 'delete' THEN 'deleted' ELSE 'updated' END, v_job.done + v_rows,
            'pages', v_checkpoint -> 'pages')
            || CASE WHEN v_checkpoint ? 'skipped'
                    THEN jsonb_build_object('skipped', v_checkpoint -> 'skipped' -> 'rows',
                                            'skipped_reason', v_checkpoint -> 'skipped' -> 'reason',
                                            'skipped_first', (v_checkpoint -> 'skipped')
                                                             - 'rows' - 'reason')
                    ELSE '{}'::jsonb END);
        DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_id;
        RETURN 'done';
    END IF;
    RETURN 'more';
END
$$;
