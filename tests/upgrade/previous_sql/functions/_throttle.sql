CREATE OR REPLACE FUNCTION pgjobs._throttle(p_id bigint, p_worker text, p_deadline timestamptz)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Called by pgjobs._run_step before each page of a writing job, and by
-- the import worker before each batch (rows: the checkpoint's records):
-- may the page run now? Returns NULL (run it) or 'more' (not now: the runner
-- COMMITs and calls again, or releases the job when its deadline
-- p_deadline, NULL: none, has passed; no attempt is counted), or
-- 'released' (handed back, see below; the runner claims other work).
--
-- Rate limit (options max_rows_per_second, page_delay): the next page
-- starts no earlier than the previous page's start plus its rows divided by
-- max_rows_per_second, and no earlier than page_delay after it ended. Pages
-- are capped at max_rows_per_second rows (checkpoint page_size; an import's
-- batches keep their size, batch_ms). The wait
-- is slept here, before anything is locked, at most 1 s per call (so the
-- runner's deadline and a cancel are seen), within the deadline. A runner
-- with a budget (p_deadline) does not sleep through a longer wait while
-- another writing job is due and may start (pgjobs._other_writer_due): the
-- job is released (no attempt counted) with run_at = when its next page
-- may start, and the runner moves on.
--
-- Health (pgjobs._health, sampled at most every 0.5 s per session): the
-- page is held while a standby or active slot is further behind than
-- max_replica_lag_bytes (default 256 MB), the WAL rate exceeds
-- max_wal_rate (default none), autovacuum works on the target
-- (pause_on_autovacuum, default true) or a transaction older than
-- max_xact_age (default none) runs. A limit of 0 is none. While held:
-- checkpoint.throttled = {"reason", "since"} (merged into the checkpoint,
-- the cursor kept), ONE `throttled` event per spell, the lease extended
-- (fenced, as a heartbeat), and the next call sleeps 0.25 s first, so
-- paging resumes within about 0.75 s of the signal clearing. The first
-- page removes checkpoint.throttled (pgjobs._run_page writes the
-- checkpoint afresh; so does this function when a signal's spell ends; a
-- hand-back's note, pgjobs._table_hand_back's or _fence_hand_back's, is
-- left for the page: one wait is one spell, one event).
--
-- Autovacuum counts on the target, its partitions and their TOAST tables.
-- A limit that is not valid any more (edited in pgjobs.jobs) fails the job
-- (22023's message; 'failed'). Not held here (NULL: the page decides): a job that is not running, not
-- p_worker's, being canceled or paused, or not yet started (no checkpoint: its first
-- step only counts). The pacing state lives in the session setting
-- pgjobs.pace (a runner procedure is one session).
-- Locks: the job row (UPDATE) only when a spell starts, changes reason,
-- ends, or the lease is half spent; nothing while sleeping.
DECLARE
    v_job pgjobs.jobs;
    v_pace jsonb := nullif(current_setting('pgjobs.pace', true), '')::jsonb;
    v_mine boolean;
    v_now double precision;
    v_deadline double precision := extract(epoch FROM p_deadline);
    v_rate numeric;
    v_autovacuum boolean;
    v_valid text;
    v_delay double precision;
    v_not_before double precision;
    v_lag_limit numeric;
    v_wal_limit numeric;
    v_age_limit double precision;
    v_health jsonb;
    v_reason text;
    v_done bigint;
BEGIN
    v_mine := coalesce(v_pace ->> 'job' = p_id::text, false);
    IF v_mine AND v_pace ? 'held' THEN
        -- Held at the previous call: poll again shortly, nothing locked.
        PERFORM pg_sleep(greatest(0, least(0.25,
            coalesce(v_deadline - extract(epoch FROM clock_timestamp()), 0.25))));
    END IF;
    SELECT * INTO v_job FROM pgjobs.jobs j WHERE j.id = p_id;
    -- A job handed back before its first page (its table held:
    -- pgjobs._table_hand_back) has a checkpoint that holds only that note:
    -- not started, as pgjobs._run_page reads it. Taken for a started job,
    -- a rate limit's page_size went into it here, and the first page then
    -- took {"page_size"} for a cursor: no count (total NULL), no strategy.
    -- So is one whose first call waited on row locks (its lock_waits only).
    IF v_job.checkpoint - 'throttled' - 'lock_waits' = '{}'::jsonb THEN
        v_job.checkpoint := NULL;
    END IF;
    IF NOT FOUND OR v_job.status <> 'running' OR v_job.worker IS DISTINCT FROM p_worker
       OR v_job.cancel_requested_at IS NOT NULL OR v_job.pause_requested_at IS NOT NULL
       OR v_job.checkpoint IS NULL
       OR NOT v_job.writes THEN
        RETURN NULL;
    END IF;
    v_now := extract(epoch FROM clock_timestamp());
    -- Rows so far: an import's done counts bytes of its source, its records
    -- are in the checkpoint (pgjobs.import_batch).
    v_done := CASE WHEN v_job.kind = 'import'
                   THEN coalesce((v_job.checkpoint ->> 'records')::bigint, 0)
                   ELSE v_job.done END;

    -- The limits, checked again: an administrator may have edited them
    -- (UPDATE pgjobs.jobs SET options = ...). A bad one fails the job, as a
    -- bad option fails a submit, rather than every runner that claims it.
    -- (Once per session and value of the options: the session remembers
    -- their md5 in pgjobs.pace.)
    v_valid := md5(v_job.options::text);
    BEGIN
        IF NOT (v_mine AND v_pace ->> 'valid' = v_valid) THEN
            PERFORM pgjobs._throttle_options(v_job.options);
        END IF;
        v_rate := coalesce((v_job.options ->> 'max_rows_per_second')::numeric, 0);
        v_delay := coalesce(extract(epoch FROM (v_job.options ->> 'page_delay')::interval), 0);
        v_lag_limit := coalesce((v_job.options ->> 'max_replica_lag_bytes')::numeric, 268435456);
        v_wal_limit := coalesce((v_job.options ->> 'max_wal_rate')::numeric, 0);
        v_age_limit := coalesce(extract(epoch FROM (v_job.options ->> 'max_xact_age')::interval), 0);
        v_autovacuum := coalesce((v_job.options ->> 'pause_on_autovacuum')::boolean, true);
    EXCEPTION WHEN invalid_parameter_value THEN
        GET STACKED DIAGNOSTICS v_reason = MESSAGE_TEXT;
        PERFORM pgjobs.fail(p_id, p_worker, v_reason, false);
        RETURN 'failed';
    END;

    -- Rate limit.
    IF (v_rate > 0 OR v_delay > 0) AND v_mine THEN
        IF v_pace ? 'started' THEN
            -- A page ran since the last call: when may the next one start?
            v_not_before := greatest(v_now + v_delay,
                (v_pace ->> 'started')::double precision
                + CASE WHEN v_rate > 0
                       THEN (v_done - (v_pace ->> 'done')::bigint)::double precision / v_rate
                       ELSE 0 END);
        ELSE
            v_not_before := (v_pace ->> 'not_before')::double precision;
        END IF;
        IF v_not_before > v_now THEN
            PERFORM set_config('pgjobs.pace', jsonb_build_object(
                'job', p_id, 'not_before', v_not_before, 'valid', v_valid)::text, false);
            -- A wait longer than one call, with another writing job due and
            -- free to start: hand this one back, due when its next page may
            -- start (the client chose the limits: one client's slow jobs
            -- must not hold the runners other scopes wait for).
            IF v_deadline IS NOT NULL AND v_not_before - v_now > 1.0
               AND pgjobs._other_writer_due(p_id) THEN
                IF pgjobs.release(p_id, p_worker) THEN
                    UPDATE pgjobs.jobs j SET run_at = to_timestamp(v_not_before)
                     WHERE j.id = p_id AND j.status = 'queued';
                END IF;
                RETURN 'released';
            END IF;
            PERFORM pg_sleep(greatest(0, least(v_not_before - v_now, 1.0,
                                                coalesce(v_deadline - v_now, 1.0))));
            v_now := extract(epoch FROM clock_timestamp());
            IF v_not_before > v_now + 0.001 THEN
                PERFORM pgjobs._throttle_hold(v_job, p_worker, NULL);
                RETURN 'more';
            END IF;
        END IF;
    END IF;
    IF v_rate > 0 AND NOT v_job.options ? 'page_size' AND v_job.kind <> 'import'
       AND coalesce((v_job.checkpoint ->> 'page_size')::bigint, 1000) > v_rate THEN
        UPDATE pgjobs.jobs j
           SET checkpoint = jsonb_set(j.checkpoint, '{page_size}',
                                      to_jsonb(greatest(trunc(v_rate), 1)::bigint))
         WHERE j.id = p_id AND j.worker = p_worker;
    END IF;

    -- Health.
    IF v_lag_limit > 0 OR v_wal_limit > 0 OR v_age_limit > 0 OR v_autovacuum THEN
        -- The session's sample when fresh (what pgjobs._health would return,
        -- without the call), else a new one.
        v_health := nullif(current_setting('pgjobs.health', true), '')::jsonb;
        IF NOT coalesce(v_now - (v_health ->> 'at')::double precision BETWEEN 0 AND 0.5,
                        false) THEN
            v_health := pgjobs._health();
        END IF;
        -- Autovacuum works on a table's leaves and TOAST tables, under
        -- their own oids (looked up only while some table is vacuumed).
        -- The leaves from pg_inherits: pg_partition_tree would lock every
        -- partition, and wait for one that another tenant's DDL holds.
        v_autovacuum := v_autovacuum AND jsonb_array_length(v_health -> 'autovacuum') > 0
            AND EXISTS (
                WITH RECURSIVE tree (relid) AS (
                    SELECT v_job.target::oid
                    UNION
                    SELECT i.inhrelid FROM tree t
                      JOIN pg_catalog.pg_inherits i ON i.inhparent = t.relid)
                SELECT 1 FROM pg_class c
                 WHERE c.oid IN (SELECT t.relid FROM tree t)
                   AND (v_health -> 'autovacuum' @> to_jsonb(c.oid::bigint)
                        OR v_health -> 'autovacuum' @> to_jsonb(c.reltoastrelid::bigint)));
        v_reason := CASE
            WHEN v_lag_limit > 0 AND (v_health ->> 'lag')::numeric > v_lag_limit THEN
                format('replica lag: %s is %s bytes behind (max_replica_lag_bytes %s)',
                       v_health ->> 'lag_from', v_health ->> 'lag', v_lag_limit)
            WHEN v_autovacuum THEN
                format('autovacuum is working on %s (pause_on_autovacuum)', v_job.target)
            WHEN v_wal_limit > 0 AND (v_health ->> 'wal_rate')::numeric > v_wal_limit THEN
                format('WAL rate: %s bytes/s (max_wal_rate %s)',
                       v_health ->> 'wal_rate', v_wal_limit)
            WHEN v_age_limit > 0 AND (v_health ->> 'xact_age')::double precision > v_age_limit THEN
                format('oldest transaction open for %s s (max_xact_age %s)',
                       round((v_health ->> 'xact_age')::numeric), v_job.options ->> 'max_xact_age')
            END;
    END IF;
    IF v_reason IS NOT NULL THEN
        PERFORM pgjobs._throttle_hold(v_job, p_worker, v_reason);
        PERFORM set_config('pgjobs.pace', jsonb_build_object(
            'job', p_id, 'held', true, 'valid', v_valid)::text, false);
        RETURN 'more';
    END IF;
    -- A signal's spell ends here. A hand-back's note (its table held:
    -- "holders"; the DDL fence: "waits_for") stays for the page: a page
    -- that runs writes the checkpoint afresh (pgjobs._run_page), one still
    -- blocked is handed back again in the same spell (its "since" kept, no
    -- second `throttled` event). Dropped here, a job whose partition stayed
    -- held (the claim's look-up reads the parent only) began a new spell,
    -- and sent another event, at every claim of one wait.
    IF v_job.checkpoint ? 'throttled'
       AND NOT (v_job.checkpoint -> 'throttled' ?| ARRAY['holders', 'waits_for']) THEN
        UPDATE pgjobs.jobs j SET checkpoint = j.checkpoint - 'throttled', updated_at = now()
         WHERE j.id = p_id AND j.worker = p_worker;
    END IF;
    -- The page runs: remember when it started, and done before it.
    PERFORM set_config('pgjobs.pace', jsonb_build_object(
        'job', p_id, 'started', v_now, 'done', v_done, 'valid', v_valid)::text, false);
    RETURN NULL;
END
$$;
