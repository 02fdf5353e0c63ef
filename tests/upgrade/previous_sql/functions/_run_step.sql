CREATE OR REPLACE FUNCTION pgjobs._run_step(p_id bigint, p_worker text,
                                            p_deadline timestamptz, p_previous text)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- One step of the runner procedures (pgjobs.run, pgjobs.run_job), in the
-- caller's transaction, which COMMITs right after: a short pause when the
-- previous step was 'retry' (a lock wait; taken before the page locks
-- anything), one page (pgjobs._run_page, fenced on p_worker, the claim's
-- identity) unless pgjobs._throttle holds it (rate limit, health signals:
-- then 'more' and no page), and, when p_deadline (NULL: none) has passed with work left,
-- the job released to the queue with its cursor (pgjobs.release).
-- Returns 'more' or 'retry' while the caller should call again, NULL when
-- this job is over for this runner (done, failed, canceled, lost or
-- released; its table held by another session, or the DDL fence held past
-- a commit: handed back, see below; its row held by another transaction
-- for 1 s: then a WARNING says so).
-- Locks: what pgjobs._run_page locks.
DECLARE
    -- The statement_timeout whose timer runs (armed when the CALL began: a
    -- page's SET LOCAL ended with the previous step's COMMIT).
    v_armed text := current_setting('statement_timeout');
    v_state text;
    v_problem record;
    v_target regclass;
    v_holders text;
    v_waited text;
    v_fenced boolean := false;
    v_fence text;
BEGIN
    -- The job's row is the engine's to lock, but a client's open
    -- transaction may hold it: pgjobs.pause, cancel, resume and retry of
    -- one's own job update it, and a client that leaves that transaction
    -- open (BEGIN; SELECT pgjobs.pause(42); and nothing more) held the page's
    -- FOR UPDATE, and so this runner, and with it every other tenant's
    -- jobs, for as long as it liked. The step waits for that row at most 1
    -- s (the page's own statements set their own lock_timeout); then this
    -- runner leaves the job for this call, with a warning, and goes on to
    -- others: its lease lapses, and a later claim (SKIP LOCKED) takes it
    -- once the row is free.
    -- The same 1 s bounds the wait for the job's table (pgjobs._hold_target),
    -- and a page's statements give up on it after their own 200 ms: a
    -- session holding the table (a migration's ALTER TABLE, a LOCK TABLE,
    -- CREATE INDEX or VACUUM FULL not yet committed) may hold it for hours.
    -- Then the job is handed back (pgjobs._table_hand_back: no attempt
    -- counted, its place in the scope kept, due again a few seconds later,
    -- the holder named in checkpoint.throttled); it used to keep its lease
    -- until it lapsed, a failed attempt each time, until it failed 'lease
    -- expired'. At the first step of every claim the holder is looked up
    -- first (pg_locks, about 0.1 ms): while one is there the job goes back
    -- at once, without a wait. A request of such a mode queued for the
    -- table (an ALTER TABLE waiting behind a long query: every later
    -- request waits behind it) counts as a holder (pgjobs._lock_queued).
    -- (20 jobs of scopes of one table held by a
    -- migration cost a runner 20 s of 1 s waits before they all were
    -- handed back; 0.08 s a round after).
    -- A page blocked by the DDL fence held past a commit (a DDL transaction
    -- that ran SET CONSTRAINTS ALL IMMEDIATE and stays open, or a prepared
    -- one: pgjobs._ddl_fence_holders) is handed back the same way
    -- (pgjobs._fence_hand_back), with a reason that names no session: the
    -- job stayed `running` without a word, retried every 50 ms, and
    -- pgjobs.run_job retried it for ever.
    PERFORM set_config('lock_timeout', '1s', true);
    BEGIN
        IF p_previous = 'retry' THEN
            PERFORM pg_sleep(0.05);
        END IF;
        IF p_previous IS NULL THEN
            SELECT j.target,
                   coalesce(j.checkpoint #>> '{throttled,waits_for}' = 'ddl_fence', false)
              INTO v_target, v_fenced
              FROM pgjobs.jobs j WHERE j.id = p_id;
            v_holders := pgjobs._table_holders(v_target, false);
            IF v_holders IS NULL AND v_fenced THEN
                -- Handed back for the DDL fence (below): still held, back
                -- again at once, the note and its spell kept (a page would
                -- only be blocked, after pgjobs._throttle dropped the note).
                v_fence := pgjobs._ddl_fence_holders();
            END IF;
        END IF;
        IF v_holders IS NULL AND v_fence IS NULL THEN
            v_state := coalesce(pgjobs._throttle(p_id, p_worker, p_deadline),  -- rate, health
                                pgjobs._run_page(p_id, p_worker));
            IF v_state = 'blocked' THEN
                -- A page statement gave up on the table (its holders, below).
                v_waited := '200 ms';
            ELSIF v_state NOT IN ('more', 'retry') THEN
                RETURN NULL;
            ELSIF p_deadline IS NOT NULL AND clock_timestamp() >= p_deadline THEN
                PERFORM set_config('lock_timeout', '1s', true);
                PERFORM pgjobs.release(p_id, p_worker);
                RETURN NULL;
            ELSE
                RETURN v_state;
            END IF;
        END IF;
    EXCEPTION WHEN lock_not_available THEN
        v_waited := '1 s';
    WHEN query_canceled THEN
        -- A cancel outside a page (a page's handlers catch their own): in a
        -- throttle's wait between pages (page_delay, max_rows_per_second, a
        -- health signal), the pause after a lock wait, or the wait for the
        -- job's row or table. A user's (pg_cancel_backend, a client's cancel
        -- request, `pgjobs run --loop` stopped by SIGTERM or Ctrl-C): the job
        -- is handed back (pgjobs.release: no attempt counted, its cursor
        -- kept, due at once), and the CALL ends with 57014 once that is
        -- committed (pgjobs._run_canceled). It ended at once, the job left
        -- `running` under this runner's lease until the lease lapsed. The
        -- statement_timeout's (by time, never by the message) is raised as
        -- before: the runners keep their own deadline inside it.
        IF pgjobs._statement_timed_out(v_armed) THEN
            RAISE;
        END IF;
        PERFORM set_config('lock_timeout', '1s', true);
        BEGIN
            PERFORM pgjobs.release(p_id, p_worker);
        EXCEPTION WHEN lock_not_available THEN
            NULL;  -- its row held by a client's transaction: its lease lapses
        END;
        PERFORM set_config('pgjobs.canceled', 'between:' || p_id, false);
        RETURN NULL;
    END;
    IF v_holders IS NULL AND v_fence IS NULL THEN
        -- After a wait: a partition held counts too (pgjobs._table_holders).
        SELECT j.target INTO v_target FROM pgjobs.jobs j WHERE j.id = p_id;
        v_holders := pgjobs._table_holders(v_target, true);
        IF v_holders IS NULL AND v_state = 'blocked' THEN
            -- Not its table: the DDL fence held past a commit (a DDL
            -- transaction after SET CONSTRAINTS ALL IMMEDIATE, or a
            -- prepared one) blocks every page until it ends; a commit under
            -- way (microseconds) is not named, and the page is tried again.
            v_fence := pgjobs._ddl_fence_holders();
        END IF;
    END IF;
    IF v_holders IS NOT NULL THEN
        BEGIN
            PERFORM pgjobs._table_hand_back(p_id, p_worker, v_holders, v_waited,
                                            p_deadline IS NULL);
            RETURN NULL;
        EXCEPTION WHEN lock_not_available THEN
            NULL;  -- its row held too: as below
        END;
    ELSIF v_fence IS NOT NULL THEN
        BEGIN
            PERFORM pgjobs._fence_hand_back(p_id, p_worker, v_fence, p_deadline IS NULL);
            RETURN NULL;
        EXCEPTION WHEN lock_not_available THEN
            NULL;  -- its row held: as below
        END;
    ELSIF v_state = 'blocked' THEN
        RETURN 'retry';  -- the holder has gone meanwhile: the page again
    END IF;
    -- Which lock (the job's row, or its table) and who holds it.
    SELECT * INTO v_problem FROM pgjobs._lock_wait_problem(p_id, coalesce(v_waited, '1 s'));
    RAISE WARNING 'pgjobs: job % left for now: %', p_id, v_problem.message
        USING HINT = v_problem.hint;
    RETURN NULL;
END
$$;
