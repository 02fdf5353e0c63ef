CREATE OR REPLACE FUNCTION pgjobs.claim_items(
    p_kinds text[],
    p_worker text,
    p_lease interval DEFAULT '30 seconds',
    p_limit integer DEFAULT 1)
RETURNS SETOF pgjobs.job_items
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Hands up to p_limit queued items of fan-out jobs of the given kinds to
-- p_worker: jobs by priority (higher first), then the job served least
-- recently first (heartbeat_at, set when the job starts and whenever one
-- of its items ends, a retried failure too; until it starts, when it joined the queue: a fan-out
-- job holds no budget to hand back, so this is its turn in the queue),
-- then submission, a claim of many items sharing them evenly between the
-- jobs of the highest priority that has items (one each first, then even
-- shares of what is left); within a job
-- the items due first (run_at: array order, and a retry after its backoff
-- behind the items due before it), then by id, of jobs that are queued or
-- running and due (run_at). Each item is marked running with its own
-- claim identity in worker (p_worker#token, pgjobs._claim_identity),
-- attempts + 1 and a lease of the job's lease option or else p_lease; the
-- caller passes worker back to heartbeat_item, complete_item and
-- fail_item, which fence on it. A queued job becomes
-- running at its first claim (event started). A job's option concurrency
-- caps its items out at once across every worker: its claimers serialize on
-- the job's row (FOR NO KEY UPDATE, which no client may take), count what
-- is out and take no more than the rest; a claimer that finds the row
-- locked (by another claimer, or by a call ending one of the job's items)
-- skips the job in that call instead of waiting.
-- Expired item leases are rescued first. Before the first item of a job
-- is handed out by a call, its submitter's rights are checked, once per
-- job per call (pgjobs._may_start_attempt, as every
-- attempt of a job is): a job whose submitter lost what the submit needed
-- fails there, its unfinished items canceled, and hands nothing out; a
-- retried item after its backoff or an item whose lease expired is
-- claimed only through this check.
-- Locks: FOR UPDATE SKIP LOCKED on the items it takes (concurrent claimers
-- never wait for each other and never get the same item); the job row of
-- a capped job (FOR NO KEY UPDATE SKIP LOCKED) and of a queued job it
-- starts (SKIP LOCKED too), and of a job it fails (SKIP
-- LOCKED, then its unfinished items: pgjobs._may_start_attempt).
-- Plans: custom, unlike pgjobs.claim. The take below is planned at every
-- call (a custom plan for a small LIMIT looks cheaper), but the generic
-- plans of the other statements are other scans: in a queue of 2,000 jobs
-- and 22 fan-out jobs, the jobs loop read pgjobs.jobs in full for an
-- unknown p_kinds (not jobs_unfinished_idx), and the probe of a job with
-- few items read pgjobs.job_items in full (not job_items_job_idx).
DECLARE
    v_job pgjobs.jobs;
    v_left integer := p_limit;
    v_cap integer;
    v_count integer;
    v_concurrency integer;
    v_lease interval;
    v_share integer := 1;
    v_taken integer;
    v_served integer;
    v_checked bigint[] := '{}'::bigint[];
    v_top integer;
BEGIN
    PERFORM pgjobs._check_claim_args(p_worker, p_lease);
    PERFORM pgjobs._check_kinds(p_kinds, 'thumbnail');  -- 22023
    -- A kind pgjobs runs itself is never a fan-out job (the submit's own rule,
    -- pgjobs._submit_items_as): a worker asking for one got no item, without a
    -- word, for as long as it polled.
    IF EXISTS (SELECT FROM unnest(p_kinds) k(kind)
                WHERE pgjobs._builtin_kind(k.kind) OR pgjobs._writes(k.kind)) THEN
        RAISE EXCEPTION 'kinds holds %, which is never a fan-out job',
            (SELECT string_agg(quote_literal(k.kind), ', ') FROM unnest(p_kinds) k(kind)
              WHERE pgjobs._builtin_kind(k.kind) OR pgjobs._writes(k.kind))
            USING ERRCODE = '22023',
            HINT = 'pgjobs runs delete and backfill itself (pgjobs.run) and export and import '
                   'in `pgjobs worker`; fan-out jobs have a kind of your own: claim it, e.g. '
                   'ARRAY[''thumbnail''].';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit must be from 1 to 1000, not %', p_limit
            USING ERRCODE = '22023',
            HINT = 'Claim from 1 to 1000 at a time: as many as the worker has free slots.';
    END IF;

    PERFORM pgjobs._items_rescue();

    -- Passes over the jobs, each job taking at most v_share items a pass: one
    -- each first, then an even share of what is left among the jobs that
    -- still had items. A claim of many items (a worker's free slots) took
    -- them all from the first job in the order below, and every other job
    -- of the priority, another tenant's too, waited for that job's items to
    -- end before it got one. Priorities still win: a pass serves only the
    -- priority of the first job that gave it items, so a lower one gets
    -- items only once the higher ones have none left.
    <<passes>>
    LOOP
        v_taken := 0;
        v_served := 0;
        v_top := NULL;
        FOR v_job IN
            SELECT (j).* FROM (
            SELECT j,
                   -- Turns go by tenant (target and scope), not by job: each
                   -- tenant's least recently served job, the tenants in
                   -- the order each was last served, before any tenant's
                   -- second job. By job alone, a
                   -- tenant with 50 fan-out jobs had 50 turns to another
                   -- tenant's one.
                   row_number() OVER tenant AS nth,
                   -- A tenant was last served by its latest served job; one
                   -- with no job started yet waits from its first job's queueing.
                   coalesce(max(j.heartbeat_at) OVER everyone,
                            min(j.queued_at) OVER everyone) AS tenant_served
              FROM pgjobs.jobs j
             WHERE j.fanout
               AND j.status IN ('queued', 'running')
               AND j.kind = ANY (p_kinds)
               AND j.run_at <= now()
            WINDOW tenant AS (PARTITION BY j.priority, j.target, j.scope
                              ORDER BY coalesce(j.heartbeat_at, j.queued_at), j.id),
                   everyone AS (PARTITION BY j.priority, j.target, j.scope)) t
             -- Taken by submission alone, the first fan-out job of a priority
             -- got every claim until its last item was out: a job of 100,000
             -- items kept another tenant's job of 10 waiting for all of them.
             -- Least recently served first, among jobs of one priority, gives
             -- each its turn (a worker that ends an item moves that job behind
             -- the others); priorities still win. A job not started yet waits
             -- from when it joined the queue: it goes ahead of a job served
             -- since, not of one whose items have run longer than it waited.
             ORDER BY (j).priority DESC, t.nth, t.tenant_served,
                      coalesce((j).heartbeat_at, (j).queued_at), (j).id
        LOOP
            CONTINUE WHEN v_job.priority < v_top;
            v_cap := least(v_left, v_share);
            v_lease := coalesce((v_job.options ->> 'lease')::interval, p_lease);
            v_concurrency := (v_job.options ->> 'concurrency')::integer;
            IF v_concurrency IS NOT NULL THEN
                -- Tried, never waited for: the job's row, FOR NO KEY UPDATE SKIP
                -- LOCKED (the fan-out lock order: the job row, then its items;
                -- pgjobs._items_lock_job). No client can lock it (that needs
                -- UPDATE on pgjobs.jobs). It was an advisory lock: any role may
                -- take any advisory lock, and pg_locks shows every session's
                -- keys to every role, so a client that watched a claim of its
                -- job read the key (sealed or not, the same at every claim) and
                -- held it, and every claim skipped the job from then on. Held
                -- by another claimer (or by a call ending one of its items):
                -- this call skips the job, the next one finds it.
                PERFORM FROM pgjobs.jobs j WHERE j.id = v_job.id
                   FOR NO KEY UPDATE SKIP LOCKED;
                CONTINUE WHEN NOT FOUND;
                v_cap := least(v_cap, v_concurrency - (
                    SELECT count(*) FROM pgjobs.job_items i
                     WHERE i.job_id = v_job.id AND i.status = 'running')::integer);
                CONTINUE WHEN v_cap <= 0;
            END IF;
            -- Checked only when there is something to hand out (an index probe):
            -- a job whose items are all out costs nothing here.
            CONTINUE WHEN NOT EXISTS (SELECT FROM pgjobs.job_items i
                                       WHERE i.job_id = v_job.id AND i.status = 'queued'
                                         AND i.run_at <= now());
            IF NOT v_job.id = ANY (v_checked) THEN  -- once per job per call
                CONTINUE WHEN NOT pgjobs._may_start_attempt(v_job);
                v_checked := v_checked || v_job.id;
            END IF;
            IF v_job.status = 'queued' THEN
                PERFORM pgjobs._items_start(v_job.id);  -- SKIP LOCKED: never waits
            END IF;
            RETURN QUERY
            WITH picked AS (
                SELECT i.id FROM pgjobs.job_items i
                 WHERE i.job_id = v_job.id AND i.status = 'queued' AND i.run_at <= now()
                   -- The job as it is now, not as the loop read it: a pause may
                   -- have committed since the loop's read, which leaves the
                   -- items queued (a cancel ends them). One probe of the job's
                   -- key per statement.
                   AND EXISTS (SELECT FROM pgjobs.jobs j
                                WHERE j.id = v_job.id AND j.status IN ('queued', 'running'))
                 -- The order of job_items_queued_idx (job_id, run_at, id), which
                 -- the primary key cannot give: the plan walks only the job's
                 -- queued items, never the key over the items already claimed
                 -- (a cost that would grow with the job).
                 ORDER BY i.run_at, i.id
                 LIMIT v_cap
                   FOR UPDATE SKIP LOCKED)
            UPDATE pgjobs.job_items i
               SET status = 'running',
                   attempts = i.attempts + 1,
                   worker = pgjobs._claim_identity(p_worker),
                   lease = v_lease,
                   lease_expires_at = now() + v_lease,
                   started_at = coalesce(i.started_at, now()),
                   updated_at = now()
              FROM picked
             WHERE i.id = picked.id
            RETURNING i.*;
            GET DIAGNOSTICS v_count = ROW_COUNT;
            v_left := v_left - v_count;
            v_taken := v_taken + v_count;
            v_served := v_served + (v_count > 0)::integer;
            v_top := CASE WHEN v_count > 0 THEN coalesce(v_top, v_job.priority) ELSE v_top END;
            EXIT passes WHEN v_left <= 0;
        END LOOP;
        -- Nothing more to hand out, or the next pass shares what is left.
        EXIT passes WHEN v_taken = 0;
        v_share := ceil(v_left::numeric / v_served)::integer;
    END LOOP passes;
END
$$;

COMMENT ON FUNCTION pgjobs.claim_items(text[], text, interval, integer) IS
'Claims up to p_limit queued items of fan-out jobs of the given kinds for p_worker (FOR UPDATE '
'SKIP LOCKED), job priority first, then the job served least recently (a turn for every job '
'of a priority), then submission, then item order, a claim of many items sharing them evenly '
'between the jobs of the highest priority with items, respecting each job''s '
'concurrency option. Sets a lease (the job''s lease option, else p_lease) and increments '
'attempts. Each returned row''s worker is the claim''s identity (p_worker#token): pass it back '
'to heartbeat_item/complete_item/fail_item.';
