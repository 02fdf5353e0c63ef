CREATE OR REPLACE FUNCTION pgjobs._retry_as(
    p_caller name,
    p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs.retry, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.retry, its only permitted caller:
-- pgjobs._enter, 42501 otherwise). Who may: pgjobs._controlled_job, the
-- rule of pgjobs.cancel.
-- Failed or canceled: queued again at once (event `submitted`) from its
-- checkpoint, attempts 0, error, result, finished_at and started_at
-- cleared. What it does is what it was submitted to do: its predicate
-- (filter, exclusions, cutoff) and assignments are kept, so a retried
-- delete removes exactly the rows it would have (none created since its
-- submission), and masks them again from now on.
-- * A writing job takes a new place in its scope's queue (gate_order, from
--   the id sequence): behind every writer submitted before the retry, as a
--   resubmission would be; the writers queued meanwhile run first. The
--   scope's gate lock (pgjobs._lock_scope) orders this with concurrent
--   submissions.
-- * A 'collect' delete lost its collected addresses when it ended; its
--   cursor moves to the sweep, which finds what still matches through the
--   index again.
-- * A delete or backfill whose deferred typo guard was walking its scope
--   (payload unchecked_walk) walks it again from its start.
-- * An export or import takes its turn between tenants, as its submit
--   did (pgjobs._tenant_turn).
-- * An export keeps its checkpoint: the worker resumes its upload when the
--   staged parts are still there and starts over cleanly otherwise.
-- * An import keeps its checkpoint (offset, header, size) but forgets the
--   source version its first attempt pinned: a retry is how an operator
--   says the source was fixed in place past the committed batches
--   (docs/imports.md, Bad records), so the retried attempt pins the
--   version it finds. A resume after a pause or a lost lease keeps it.
-- * A job submitted with {"on_conflict": "reject"} is refused (55006, the
--   job unchanged) while another writer of its scope is pending, as its
--   submission would be.
-- * A delete or backfill is refused (55000) while an import of its scope
--   placed after it is pending or has written rows: see below.
-- * An export's queued upload leftovers are dropped (it resumes that
--   upload); 55006 while a worker is removing one (see below).
-- Raises 55000 for any other state, and 42501 when its submitter no longer
-- holds what the submit needed (pgjobs._require_requeue). Locks: the job
-- row; for a writing job the scope's gate lock (pgjobs._insert_job's); for
-- an export its rows of pgjobs.storage_deletions.
DECLARE
    v_job pgjobs.jobs;
    v_checkpoint jsonb;
    v_import bigint;
BEGIN
    p_caller := pgjobs._enter('retry', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    v_job := pgjobs._controlled_job(p_id);  -- P0002, 42501; locks the row
    IF v_job.status NOT IN ('failed', 'canceled') THEN
        RAISE EXCEPTION 'job % (%) cannot be retried', p_id, v_job.status
            USING ERRCODE = '55000',
            HINT = CASE WHEN v_job.status = 'paused'
                        THEN 'A paused job continues with pgjobs.resume(id).'
                        WHEN v_job.status = 'succeeded'
                        THEN 'It succeeded; submit a new job to do it again.'
                        ELSE 'Only a failed or canceled job can be retried.' END;
    END IF;
    -- What the submit needed, still held by the submitter (42501).
    PERFORM pgjobs._require_requeue(v_job, 'retried');
    IF v_job.fanout THEN
        PERFORM pgjobs._items_retry(p_id);  -- only its failed (or canceled) items
    END IF;
    -- A hand-back's note (checkpoint.throttled, kept for the next page: one
    -- wait, one spell) is of a wait that ended with the job: pgjobs.stats()
    -- would list the retried job as waiting for it.
    v_checkpoint := v_job.checkpoint - 'lock_waits' - 'throttled';
    IF v_job.kind = 'import' THEN
        v_checkpoint := v_checkpoint - 'version';
    END IF;
    IF v_checkpoint ->> 'strategy' = 'collect'
       AND (v_checkpoint ->> 'after')::bigint < (v_checkpoint ->> 'collected')::bigint
       AND NOT EXISTS (SELECT FROM pgjobs.job_batches b WHERE b.job_id = p_id) THEN
        v_checkpoint := v_checkpoint || jsonb_build_object('after', v_checkpoint -> 'collected');
    END IF;
    -- It makes a job pending again: its submitter's ceilings (55006).
    PERFORM pgjobs._require_client_room(v_job.submitted_by_oid, v_job.kind);
    IF v_job.writes THEN
        PERFORM pgjobs._lock_scope(v_job.target, v_job.scope);
        -- It queues a writer again: the submit's ceiling (55006).
        PERFORM pgjobs._require_queue_room(v_job.target, v_job.scope);
        -- A delete or backfill retried behind an import of its scope placed
        -- after its submit (a later import, or an earlier one retried
        -- since) would judge the imported rows by its old cutoff: those
        -- whose created_at the source dated before it (any backdated value)
        -- read as rows that existed at its submit and would be deleted or
        -- changed, the others spared, by the data's dates. Refused while
        -- such an import is pending or has written rows (55000); one that
        -- ended having written none is no matter.
        v_import := pgjobs._import_after(v_job, true);
        IF v_import IS NOT NULL THEN
            RAISE EXCEPTION 'job % (%) cannot be retried: import job % of % scope % came after it',
                p_id, v_job.kind, v_import, v_job.target::regclass, v_job.scope
                USING ERRCODE = '55000',
                DETAIL = format('A retried %s keeps the cutoff of its submit (%s) and judges '
                                'rows by their created_at: rows the import wrote with an '
                                'earlier created_at would read as rows that existed then.',
                                v_job.kind, v_job.cutoff),
                HINT = format('Submit a new %s for the scope as it is now (it takes the '
                              'imported rows too), or cancel import job %s first if it has '
                              'not written rows yet.', v_job.kind, v_import);
        END IF;
        -- A job submitted with on_conflict: reject never queues behind
        -- another writer; neither does its retry (a resubmission).
        IF v_job.options ->> 'on_conflict' = 'reject'
           AND NOT pgjobs._writer_may_start(v_job.target, v_job.scope, 9223372036854775807) THEN
            RAISE EXCEPTION 'a writing job is already queued, running or paused on % scope %',
                v_job.target::regclass, v_job.scope
                USING ERRCODE = '55006',
                HINT = format('Retry job %s once that job has ended, or cancel it with '
                              'pgjobs.cancel(id).', p_id);
        END IF;
    END IF;
    -- An export's upload leftovers, queued when it ended without its worker
    -- (pgjobs._queue_export_leftovers), are its upload again: the retried
    -- attempt resumes it and its own worker removes it at its end. Their
    -- rows go now, under the row lock a worker's removal holds from
    -- pgjobs.start_storage_deletion to its settling: a removal under way
    -- refuses the retry (55006) rather than let it resume an upload being
    -- removed, and one not begun yet finds its row gone and removes nothing.
    IF v_job.kind = 'export' THEN
        BEGIN
            PERFORM FROM pgjobs.storage_deletions d
             WHERE d.job_id = p_id AND d.upload IS NOT NULL
               FOR UPDATE NOWAIT;
        EXCEPTION WHEN lock_not_available THEN
            RAISE EXCEPTION 'job % (export) cannot be retried now: a worker is removing the '
                            'upload it left', p_id
                USING ERRCODE = '55006',
                      HINT = 'Retry it in a few seconds, once the removal has ended; the export '
                             'then starts its upload over.';
        END;
        DELETE FROM pgjobs.storage_deletions d
         WHERE d.job_id = p_id AND d.upload IS NOT NULL;
    END IF;
    -- The deferred typo guard's walk (payload unchecked_walk) starts again
    -- from the scope's start: its place was reached before the job ended
    -- (canceled, or failed by anything but the walk's own verdict), and
    -- the rows behind it may have been fixed since; resumed from there, the
    -- retry never read them and failed on a field its scope now has.
    UPDATE pgjobs.jobs
       SET status = 'queued', attempts = 0, error = NULL, result = NULL,
           payload = payload - 'unchecked_walk',
           finished_at = NULL, started_at = NULL, cancel_requested_at = NULL,
           run_at = now(),
           -- A client's pause after the retry starts a clock of its own
           -- (pgjobs._pause_since keeps an earlier pause's).
           paused_at = NULL,
           -- This transaction counts it again toward its client's ceilings
           -- (pgjobs._enter_client_room).
           room_xact = pg_current_xact_id(),
           -- An export's or import's turn between tenants, as at its submit.
           queued_at = pgjobs._tenant_turn(v_job.kind, v_job.target, v_job.scope, now()),
           checkpoint = v_checkpoint,
           gate_order = nextval(pg_get_serial_sequence('pgjobs.jobs', 'id')),
           updated_at = now()
     WHERE id = p_id
    RETURNING * INTO v_job;
    PERFORM pgjobs._notify(v_job, 'submitted');
    RETURN pgjobs._leave(true);
END
$$;
