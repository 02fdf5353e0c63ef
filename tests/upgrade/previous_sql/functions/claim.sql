CREATE OR REPLACE FUNCTION pgjobs.claim(
    p_kinds text[],
    p_worker text,
    p_lease interval DEFAULT '30 seconds',
    p_limit integer DEFAULT 1)
RETURNS SETOF pgjobs.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET plan_cache_mode = force_generic_plan
AS $$
-- Hands up to p_limit queued jobs of the given kinds to p_worker, highest
-- priority first, then the longest queued (queued_at: submitted, or handed
-- back at the end of a runner's budget by pgjobs.release, so a job that
-- used up a budget goes behind the jobs that waited meanwhile: round-robin
-- by budget), then by id; only jobs whose run_at has come. Each is
-- marked running with a lease of p_lease and its attempts incremented, and
-- announces `started`. Each claimed row's `worker` is the claim's own
-- identity, p_worker || '#' || a random token (pgjobs._claim_identity): the
-- caller passes that value back to heartbeat, complete, fail and release,
-- which fence on it exactly. The rows are locked when picked and started by
-- pgjobs._start_attempts (the one routine that starts an attempt) in the same
-- transaction: there is no moment when a job is "running" without an owner
-- holding a lease. A job whose submitter no longer holds what the submit
-- needed fails there instead of starting (event failed), and is not
-- returned.
--
-- The gate (pgjobs._writer_may_start): a writing job (delete, backfill,
-- import) is handed out only when no other writing job of its (target,
-- scope) is running or queued ahead of it, so writes to a scope apply one
-- at a time, in submission order. Exports and custom kinds are never held
-- back.
--
-- Locks: FOR UPDATE SKIP LOCKED on the rows it takes; concurrent claimers
-- never wait for each other and never get the same job. Expired leases are
-- rescued first (pgjobs._rescue_expired: its probe of the leases index
-- writes nothing when none has expired).
--
-- Plans: generic (plan_cache_mode, here and in pgjobs._start_attempts and
-- pgjobs.complete_many). PL/pgSQL otherwise keeps re-planning a statement
-- whose custom plan looks cheaper than its generic one, which is the case
-- for every statement of a claim of one job (LIMIT 1, an array of one id):
-- the pick and the start's two statements were planned on every claim, and
-- planning was about a quarter of a claim's server time, while the generic
-- plans are the same index scans (the pick walks jobs_queued_idx in its
-- order and stops at the LIMIT whatever its value; ids go through
-- jobs_pkey). Functions this one calls inherit the setting; their
-- statements are lookups by key or have no parameters.
DECLARE
    v_ids bigint[];
    v_picked bigint[] := '{}'::bigint[];
    v_left integer := p_limit;
    v_started integer;
BEGIN
    PERFORM pgjobs._check_claim_args(p_worker, p_lease);
    PERFORM pgjobs._check_kinds(p_kinds, 'export');  -- 22023
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit must be from 1 to 1000, not %', p_limit
            USING ERRCODE = '22023',
            HINT = 'Claim from 1 to 1000 at a time: as many as the worker has free slots.';
    END IF;

    -- Expired leases first (a probe; the sweep only when one expired).
    PERFORM pgjobs._rescue_expired();

    -- The pick: one statement, planned once per session (PL/pgSQL caches it).
    -- Picked again when pgjobs._start_attempts failed some of the jobs
    -- picked (their submitter lost a right, or one is left queued for a
    -- later claim: pgjobs._may_start_attempt), never the same job twice;
    -- the claimer still gets the due jobs behind them (a run loop would
    -- otherwise stop its budget at an empty claim).
    LOOP
        v_ids := ARRAY(
            SELECT j.id
              FROM pgjobs.jobs j
             WHERE j.status = 'queued'
               AND j.run_at <= now()
               AND j.kind = ANY (p_kinds)
               AND NOT j.fanout  -- its items are the work (pgjobs.claim_items)
               -- Not one this call picked: a job left queued (its target
               -- held past the deferred typo guard's wait) was picked again
               -- and again, and the claim never ended.
               AND j.id <> ALL (v_picked)
               AND (NOT j.writes
                    OR pgjobs._writer_may_start(j.target, j.scope, coalesce(j.gate_order, j.id)))
             ORDER BY j.priority DESC, j.queued_at, j.id
             LIMIT v_left
               FOR UPDATE SKIP LOCKED);
        EXIT WHEN cardinality(v_ids) = 0;
        v_picked := v_picked || v_ids;
        RETURN QUERY SELECT * FROM pgjobs._start_attempts(v_ids, p_worker, p_lease);
        GET DIAGNOSTICS v_started = ROW_COUNT;
        v_left := v_left - v_started;
        -- Every job picked started (the queue may hold no more), or enough did.
        EXIT WHEN v_started = cardinality(v_ids) OR v_left <= 0;
    END LOOP;
END
$$;

COMMENT ON FUNCTION pgjobs.claim(text[], text, interval, integer) IS
'Claims up to p_limit queued jobs of the given kinds for p_worker (FOR UPDATE SKIP LOCKED), '
'priority, then time in the queue (a job handed back at the end of a budget queues anew), '
'respecting run_at and the one-writer-per-(target, scope) gate. Sets a '
'lease of p_lease and increments attempts. Returns the claimed rows; each row''s worker is '
'the claim''s identity (p_worker#token): pass it back to heartbeat/complete/fail/release.';
