CREATE OR REPLACE FUNCTION pgjobs._export_part_judge(p_job pgjobs.jobs, p_part integer)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The deferred typo guard of a parallel export (p_job.payload holds
-- unchecked_fields: its scope had no row at the submit, nor at the job's
-- claim), judged at the claim of its part p_part (pgjobs.claim_export_part),
-- as pgjobs._may_start_attempt judges it at the claim of a whole export.
-- A part's chunk that meets the guard still pending (rows arrived after the
-- job's claim) raises 55000 and its part is retried alone; its next claim
-- judges here, against the rows. Returns true when the part may be handed
-- out (every path in some row: the list is cleared from the job's payload;
-- or the scope still has no row: the list stays, the part's chunks read
-- nothing, or meet the guard again). Otherwise false, the part not handed
-- out:
--   a path no row has, or an error a retry cannot fix (pgjobs._requeue_problem
--   too: the claimer judges the target's trust before it reads it): the
--   part fails, its error the problem's message, SQLSTATE and hint in the
--   one-line form a part's error takes ("... [22023] (hint: ...)"), and the
--   job's worker fails the job with it, for good;
--   a transient error of the walk (pgjobs.retryable_sqlstate): an attempt of
--   the part is counted, the part queued again (failed once the job's
--   max_attempts are spent), the others untouched;
--   its table held past the walk's 200 ms wait: nothing changes, a later
--   claim judges.
-- A user's cancel during the walk (a 57014 that pgjobs._statement_timed_out
-- does not call the statement_timeout's) is raised: the claim ends with it,
-- as asked, the part left queued as it was. It was caught as a transient
-- error, an attempt of the part counted.
-- A function of its own so that only such claims pay its exception block.
-- Locks: the part's row (the claim holds it), the job's row to clear the
-- list (pgjobs._unchecked_fields_problem).
DECLARE
    -- The statement_timeout whose timer runs: the claim sets none.
    v_armed text := current_setting('statement_timeout');
    v_problem record;
    v_message text;
    v_hint text;
    v_sqlstate text := '22023';
    v_state text;
    v_error text;
BEGIN
    v_problem := pgjobs._requeue_problem(p_job, 'started');
    IF v_problem.message IS NOT NULL THEN
        v_message := v_problem.message;
        v_hint := v_problem.hint;
        v_sqlstate := '42501';
    ELSE
        BEGIN
            SELECT u.message, u.hint INTO v_message, v_hint
              FROM pgjobs._unchecked_fields_problem(p_job) u;
        EXCEPTION WHEN query_canceled OR OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_error = MESSAGE_TEXT;
            IF v_state = '57014' AND NOT pgjobs._statement_timed_out(v_armed) THEN
                RAISE;
            END IF;
            IF pgjobs.retryable_sqlstate(v_state) THEN
                UPDATE pgjobs.export_parts p
                   SET status = CASE WHEN p.attempts + 1 < j.max_attempts THEN 'queued'
                                     ELSE 'failed' END,
                       attempts = p.attempts + 1,
                       lease_expires_at = NULL,
                       error = left(format('part %s: the typo guard''s walk of the scope at its '
                                           'claim: %s [%s] (hint: the part is retried alone; '
                                           'its next claim judges the fields again)',
                                           p_part, v_error, v_state), 10000),
                       updated_at = now()
                  FROM pgjobs.jobs j
                 WHERE p.job_id = p_job.id AND p.part = p_part AND j.id = p.job_id;
                RETURN false;
            END IF;
            v_message := format('the document fields the submit of export job %s could not '
                                'judge could not be judged at the claim of its part %s either: %s',
                                p_job.id, p_part, v_error);
            v_hint := 'Fix the cause, then pgjobs.retry(' || p_job.id || '); or submit it '
                      'again with the option {"allow_unknown_fields": true} if its fields '
                      'are right.';
            v_sqlstate := v_state;
        END;
    END IF;
    IF v_message IS NULL THEN
        -- Judged (or the scope still empty): handed out. Held past the
        -- walk's wait (a hint alone): not now, nothing changed.
        RETURN v_hint IS NULL;
    END IF;
    UPDATE pgjobs.export_parts p
       SET status = 'failed',
           attempts = p.attempts + 1,
           lease_expires_at = NULL,
           error = left(format('%s [%s] (hint: %s)', v_message, v_sqlstate, v_hint), 10000),
           updated_at = now()
     WHERE p.job_id = p_job.id AND p.part = p_part;
    RETURN false;
END
$$;
