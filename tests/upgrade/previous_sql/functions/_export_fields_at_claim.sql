CREATE OR REPLACE FUNCTION pgjobs._export_fields_at_claim(
    p_job pgjobs.jobs,
    OUT message text,
    OUT hint text,
    OUT requeued boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The deferred typo guard of an export, judged at its claim
-- (pgjobs._may_start_attempt, only while p_job.payload holds
-- unchecked_fields): message and hint as pgjobs._unchecked_fields_problem
-- gives them (no message and a hint: the target was held past its 200 ms
-- wait). A walk that meets a transient error (pgjobs.retryable_sqlstate)
-- fails this attempt only: requeued is true, the job's row has been
-- updated (attempt counted, queued again after a backoff with event
-- retrying, or failed once its attempts are spent). A function of its own
-- so that the exception block, and the subtransaction each entry into it
-- opens, is paid only by the claims of such exports, not by every claim.
-- A user's cancel during the walk (pg_cancel_backend, a client's cancel
-- request: a 57014 that pgjobs._statement_timed_out does not call the
-- statement_timeout's) is raised, and the claim ends with it as asked, its
-- transaction rolled back: the job is left queued as it was, no attempt
-- counted. It was caught as a transient error: the attempt counted, the job
-- requeued with an error, and the claim went on as if nothing was asked.
-- Locks: the job's row, which the claim holds already.
DECLARE
    -- The statement_timeout whose timer runs: the claim sets none.
    v_armed text := current_setting('statement_timeout');
    v_job pgjobs.jobs;
    v_state text;
    v_error text;
    v_event text;
BEGIN
    requeued := false;
    BEGIN
        SELECT u.message, u.hint INTO message, hint
          FROM pgjobs._unchecked_fields_problem(p_job) u;
    EXCEPTION WHEN query_canceled OR OTHERS THEN
        -- A transient error of the walk (the only kind the walk raises:
        -- out of memory, a deadlock, a statement canceled, an I/O error)
        -- fails this attempt only, as it does at a delete's page: the
        -- attempt is counted and the job queued again after a backoff
        -- (event retrying), its list kept; failed once its attempts are
        -- spent. It failed the export for good. Any other error raised
        -- after the walk (naming the likely field reads the scope again)
        -- fails the job, as the walk's own do, rather than every claim.
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_error = MESSAGE_TEXT;
        IF v_state = '57014' AND NOT pgjobs._statement_timed_out(v_armed) THEN
            RAISE;
        END IF;
        IF NOT pgjobs.retryable_sqlstate(v_state) THEN
            message := format('job %s (%s) cannot be started: the document fields its '
                              'submit could not judge could not be judged at its start '
                              'either: %s (SQLSTATE %s)', p_job.id, p_job.kind, v_error,
                              v_state);
            hint := 'Fix the cause, then pgjobs.retry(' || p_job.id || '); or submit it '
                    'again with the option {"allow_unknown_fields": true} if its fields '
                    'are right.';
        ELSE
            UPDATE pgjobs.jobs j
               SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled'
                                 WHEN j.attempts + 1 < j.max_attempts THEN 'queued'
                                 ELSE 'failed' END,
                   attempts = j.attempts + 1,
                   error = left(format('export job %s: the typo guard''s walk of the scope at '
                                       'its claim: %s (SQLSTATE %s)', j.id, v_error, v_state),
                                10000),
                   run_at = CASE WHEN j.cancel_requested_at IS NULL
                                      AND j.attempts + 1 < j.max_attempts
                                 THEN now() + pgjobs._backoff(j.attempts + 1) ELSE j.run_at END,
                   queued_at = now(),
                   finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL
                                           OR j.attempts + 1 >= j.max_attempts
                                      THEN now() END,
                   updated_at = now()
             WHERE j.id = p_job.id AND j.status = 'queued'
            RETURNING j.* INTO v_job;
            IF FOUND THEN
                IF v_job.status = 'canceled' THEN
                    -- No worker ran it: what an earlier attempt's checkpoint
                    -- names is removed by a worker's housekeeping.
                    PERFORM pgjobs._queue_export_leftovers(v_job.id, v_job.checkpoint);
                END IF;
                v_event := CASE v_job.status WHEN 'queued' THEN 'retrying' ELSE v_job.status END;
                PERFORM pgjobs._notify(v_job, v_event);
            END IF;
            requeued := true;
        END IF;
    END;
END
$$;
