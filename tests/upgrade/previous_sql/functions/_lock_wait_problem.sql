CREATE OR REPLACE FUNCTION pgjobs._lock_wait_problem(p_id bigint, p_waited text,
                                                     OUT message text, OUT hint text)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What job p_id's runner or worker waited p_waited for (text, e.g. '1 s')
-- when its statement gave up on a lock (55P03): the job's row (a client's
-- pause, cancel, resume or retry not yet committed) or its target (an
-- ALTER TABLE, LOCK TABLE, CREATE INDEX not yet committed: pgjobs._hold_target,
-- an export's key walk), for the one message both say it in: the runner's
-- WARNING (pgjobs._run_step) and the worker's log line. A session holding
-- the table in a mode that blocks a page or a read is named
-- (pgjobs._lock_holders); the row is free when this transaction can lock
-- it now; else, the holder gone meanwhile, 'its row or its table'.
-- Locks: the job's row, FOR UPDATE SKIP LOCKED, to the end of the
-- transaction (the caller's next statement for it locks it anyway).
DECLARE
    v_target regclass;
    v_holders text;
BEGIN
    SELECT j.target INTO v_target FROM pgjobs.jobs j WHERE j.id = p_id;
    v_holders := pgjobs._lock_holders(v_target, NULL);
    IF v_holders IS NOT NULL THEN
        message := format('waited %s for its table %s, which %s holds', p_waited, v_target,
                          v_holders);
        hint := 'It goes on once that transaction ends (an ALTER TABLE, LOCK TABLE, '
                'CREATE INDEX or VACUUM FULL of the table?) and the job''s lease lapses; '
                'if it does not end, end it: SELECT pg_terminate_backend(pid).';
    ELSIF NOT EXISTS (SELECT FROM pgjobs.jobs j WHERE j.id = p_id FOR UPDATE SKIP LOCKED) THEN
        message := format('waited %s for its row, which another transaction holds (a pause, '
                          'cancel, resume or retry not yet committed?)', p_waited);
        hint := 'It goes on once that transaction ends and the job''s lease lapses; find it '
                'with pg_blocking_pids(), or set idle_in_transaction_session_timeout for '
                'client roles.';
    ELSE
        message := format('waited %s for its row or its table %s, which another transaction '
                          'held', p_waited, v_target);
        hint := 'It goes on at a later claim; if it keeps coming back, look for long '
                'transactions in pg_stat_activity that lock the job or the table, and end them.';
    END IF;
END
$$;
