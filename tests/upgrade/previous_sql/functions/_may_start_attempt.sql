CREATE OR REPLACE FUNCTION pgjobs._may_start_attempt(p_job pgjobs.jobs)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether a new attempt of p_job may start: its submitter still holds what
-- the submit needed (pgjobs._requeue_problem, the check retry and resume
-- make: the role exists, holds the kind's privileges, no row-level
-- security confines it, a registered target is still trusted by the role
-- that claims a job pgjobs runs itself: not an external worker's claim of a
-- custom kind or of fan-out items, which acts with its own rights), taken
-- as a value rather than caught as an error, so that a claim that passes
-- opens no subtransaction (an exception block costs one per claim). Asked by
-- the two places work is handed out, once per claim: pgjobs._start_attempts
-- (every attempt of a job: the first, one after a lease expired, a
-- retryable failure's backoff, a job handed back at the end of a runner's
-- budget) and pgjobs.claim_items (the items of a fan-out job). Never per
-- page or per item row.
-- Nor may the first attempt of a delete or backfill that an import of its
-- scope submitted after it wrote rows before (pgjobs._import_after), nor
-- an attempt of an export submitted on a scope without rows whose document
-- paths no row of the scope has now, asked until one judgment against rows
-- clears them (pgjobs._unchecked_fields_problem: the typo guard, deferred).
-- A delete's or backfill's deferred guard is not judged here but by its
-- page (pgjobs._run_page), before the page reads a row: judged inside the
-- claim, a missing path on a 1M-row scope walked the whole bound (0.3-1 s a
-- job) while the claim held every job row it had picked and its runner, and
-- a claim that failed one job picked the next and judged that too (one
-- claim of limit 1 took 3.4 s over 5 such jobs: bench/typo_guard.py).
-- When not, the job ends here `failed` (event failed), the error naming
-- the missing right with the check's hint (pgjobs.retry sets it going
-- again once the right is back): a fan-out job's unfinished items end
-- canceled, as at a cancel (a worker holding one gets false from its next
-- heartbeat_item or complete_item). Returns false then, and the caller
-- hands nothing of the job out. Returns false too, changing nothing, when
-- the deferred typo guard could not get its target within 200 ms: the job
-- stays queued (a caller that picks again leaves out what it picked): an
-- export only. And false when that guard's walk met a transient error
-- (pgjobs.retryable_sqlstate; pgjobs._export_fields_at_claim, a function of
-- its own so that only such claims pay its exception block): the attempt is counted as failed, the job
-- queued again after a backoff (event retrying), or failed once its
-- attempts are spent.
-- Locks: none to say true. To fail a job: its row, which the caller of
-- pgjobs._start_attempts holds already; a fan-out job's row is taken SKIP
-- LOCKED (claimers never wait: when another transaction holds it, nothing
-- of it is handed out by this claim, and a later claim fails it), then its
-- unfinished items.
DECLARE
    v_job pgjobs.jobs;
    v_problem record;
    v_message text;
    v_hint text;
    v_import bigint;
    v_requeued boolean;
BEGIN
    v_problem := pgjobs._requeue_problem(p_job, 'started');
    v_message := v_problem.message;
    v_hint := v_problem.hint;
    IF v_message IS NULL AND p_job.kind = ANY (pgjobs._engine_kinds()) AND p_job.started_at IS NULL THEN
        -- A delete or backfill that was not due yet (run_at ahead, or
        -- paused before it was due) held no place in its scope's gate, so
        -- an import submitted after it may have written rows first: with
        -- the cutoff of its submit, the job would delete or change the
        -- imported rows dated before it (pgjobs._import_after). It fails,
        -- as its retry would be refused. One that started held the gate
        -- since (a retry clears started_at): asked at its first attempt.
        v_import := pgjobs._import_after(p_job, false);
        IF v_import IS NOT NULL THEN
            v_message := format('job %s (%s) cannot be started: import job %s of %s scope %s, '
                                'submitted after it, wrote rows before it started; it keeps the '
                                'cutoff of its submit (%s) and judges rows by their created_at, '
                                'so imported rows dated earlier would read as rows that existed '
                                'then', p_job.id, p_job.kind, v_import, p_job.target::regclass,
                                p_job.scope, p_job.cutoff);
            v_hint := format('Submit a new %s for the scope as it is now (it takes the imported '
                             'rows too).', p_job.kind);
        END IF;
    END IF;
    IF v_message IS NULL
       AND p_job.kind = 'export'
       AND jsonb_typeof(p_job.payload -> 'unchecked_fields') = 'array' THEN
        -- The typo guard the submit could not apply: the scope had no row
        -- then (pgjobs._judge_fields). Rows dated before the cutoff
        -- may have arrived since, and a misspelt field would select every
        -- one of them: judged now, against the scope as it is, before the
        -- export reads a row (its worker reads chunks with no page of the
        -- engine's in between). Every attempt until a judgment against
        -- rows clears the list: it was asked at the first attempt only, so
        -- a scope still empty then counted as judged. A delete or backfill
        -- is judged by its page instead (above). Only the kind whose submit
        -- writes the list (and whose target's trust was just judged): a
        -- custom kind's payload is its client's, and judging paths on its
        -- target would run that target's code for whoever claims it.
        SELECT c.message, c.hint, c.requeued INTO v_message, v_hint, v_requeued
          FROM pgjobs._export_fields_at_claim(p_job) c;
        IF v_requeued THEN
            RETURN false;
        END IF;
        IF v_message IS NULL AND v_hint IS NOT NULL THEN
            -- Its target held past the check's 200 ms wait: not now, and not
            -- the job's fault. It stays queued, its place in the gate kept,
            -- for a later claim (this one's caller moves on).
            RETURN false;
        END IF;
    END IF;
    IF v_message IS NULL THEN
        RETURN true;
    END IF;
    IF p_job.fanout THEN
        PERFORM FROM pgjobs.jobs j
          WHERE j.id = p_job.id AND j.status IN ('queued', 'running')
            FOR NO KEY UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
        UPDATE pgjobs.job_items i
           SET status = 'canceled', lease_expires_at = NULL, finished_at = now(),
               updated_at = now()
         WHERE i.job_id = p_job.id AND i.status IN ('queued', 'running');
    END IF;
    UPDATE pgjobs.jobs j
       SET status = 'failed',
           error = left(concat_ws('. ', v_message, nullif(v_hint, '')), 10000),
           result = CASE WHEN j.fanout THEN pgjobs._items_result(j.id) ELSE j.result END,
           lease_expires_at = NULL,
           pause_requested_at = NULL,
           finished_at = now(),
           updated_at = now()
     WHERE j.id = p_job.id AND j.status IN ('queued', 'running')
    RETURNING j.* INTO v_job;
    IF FOUND THEN
        IF v_job.kind = 'export' THEN
            -- Failed for good before a worker ran it: an earlier attempt's
            -- upload (handed back, its lease expired) serves no retry, which
            -- starts it over; a worker's housekeeping removes it.
            PERFORM pgjobs._queue_export_leftovers(v_job.id, v_job.checkpoint);
        END IF;
        PERFORM pgjobs._notify(v_job, 'failed');
    END IF;
    RETURN false;
END
$$;
