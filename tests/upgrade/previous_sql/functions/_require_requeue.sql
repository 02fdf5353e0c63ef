CREATE OR REPLACE FUNCTION pgjobs._require_requeue(p_job pgjobs.jobs, p_verb text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What queueing job p_job again needs (pgjobs._retry_as, p_verb
-- 'retried'; pgjobs._resume_as, 'resumed'): what its submit needed, held
-- now by the role that submitted it, whoever asks (an admin too). The
-- check, and the message and hint, are pgjobs._requeue_problem's (the form
-- that does not raise, which the claim uses: pgjobs._may_start_attempt).
-- Raises 42501 naming the job, with the grant that is missing as hint;
-- the job is left as it was. Raises 55000 for a job whose target's
-- registration changed its columns (or was removed) since the job ended
-- (pgjobs._mark_registration_changed): compiled against the old columns,
-- it would run against other ones; likewise for a job whose target's
-- columns were renamed, dropped or retyped since its submit
-- (pgjobs._columns_changed). Locks nothing.
DECLARE
    v_problem record;
    v_changed text;
BEGIN
    IF coalesce(p_job.checkpoint ? 'registration_changed', false) THEN
        RAISE EXCEPTION 'job % cannot be %: the registration of % changed (its key, scope, '
                        'created_at or document column, or it was unregistered) after the job '
                        'was submitted', p_job.id, p_verb, p_job.target
            USING ERRCODE = '55000',
                  HINT = 'The job was compiled against the old columns; submit it again.';
    END IF;
    -- Its target's columns renamed, dropped or retyped since its submit
    -- (pgjobs._columns_changed): every attempt would fail at its first page.
    SELECT c.message INTO v_changed
      FROM pgjobs._columns_changed(p_job.target, p_job.target_columns) c;
    IF v_changed IS NOT NULL THEN
        RAISE EXCEPTION 'job % cannot be %: % since it was submitted', p_job.id, p_verb,
                        v_changed
            USING ERRCODE = '55000',
                  HINT = 'The job was compiled against the old columns; submit it again.';
    END IF;
    v_problem := pgjobs._requeue_problem(p_job, p_verb);
    IF v_problem.message IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem.message
            USING ERRCODE = '42501', HINT = v_problem.hint;
    END IF;
END
$$;
