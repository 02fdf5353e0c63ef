CREATE OR REPLACE FUNCTION pgjobs._run_start(p_budget interval)
RETURNS timestamptz
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The start of one pgjobs.run call: notes that the engine ran here
-- (pgjobs._engine_seen, what pgjobs.doctor sees of a pg_cron scheduling
-- pgjobs from another database) and returns the call's deadline
-- (pgjobs._run_deadline: 22023 for a bad budget). pgjobs.run is a thin
-- shell that may only assign results of pinned functions, hence one
-- function for both. Also cancels the writing jobs a client paused longer
-- than max_client_pause ago (pgjobs._expire_client_pauses: a probe, then
-- SKIP LOCKED), once a call, so that the bound holds where pgjobs.prune is
-- not scheduled. Locks: the note's settings row, briefly (never waits).
BEGIN
    PERFORM pgjobs._engine_seen('run');
    PERFORM pgjobs._expire_client_pauses();
    RETURN pgjobs._run_deadline(p_budget);
END
$$;
