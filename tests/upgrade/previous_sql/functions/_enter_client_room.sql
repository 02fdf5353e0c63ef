DROP FUNCTION IF EXISTS pgjobs._enter_client_room(oid);

CREATE OR REPLACE FUNCTION pgjobs._enter_client_room(p_submitter oid, p_own boolean)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Locks the client's row of pgjobs.client_room_locks before its ceilings
-- are counted (pgjobs._require_client_room,
-- pgjobs._require_client_kept_room) and returns whether the lock is
-- exclusive. A count sees the transaction's own uncommitted jobs and not
-- another session's: without a lock, two sessions that each submitted 85
-- jobs in one transaction under a ceiling of 100 each counted 85 and both
-- passed (170 kept). So a transaction that already counts a job of the
-- client, submitted or retried in it (a job of the client whose room_xact
-- is this transaction, by jobs_submitter_xact_idx: a row only a submit or
-- a retry writes, which no client can forge; a job of a subtransaction
-- rolled back is gone with it), takes the row exclusively
-- (pgjobs._lock_client_room 'exclusive'): it waits for the client's other
-- transactions that submitted to end, and holds its submits and retries
-- back until it ends. Any other takes it shared ('share'): single submits
-- of a client far from its ceilings never wait for each other, only for a
-- transaction that holds it exclusively, whose jobs they then count. Does
-- nothing for an administrator's call or a role that no longer exists
-- (they are not held to the ceilings), and locks nothing in a call acting
-- for another role than the client (p_own false: pgjobs._lock_client_room).
-- Locks: that row.
DECLARE
    v_exclusive boolean;
BEGIN
    v_exclusive := EXISTS (SELECT FROM pgjobs.jobs j
                            WHERE j.submitted_by_oid = p_submitter
                              AND j.room_xact = pg_current_xact_id_if_assigned());
    PERFORM pgjobs._lock_client_room(
        p_submitter, CASE WHEN v_exclusive THEN 'exclusive' ELSE 'share' END, p_own);
    RETURN v_exclusive;
END
$$;

COMMENT ON FUNCTION pgjobs._enter_client_room(oid, boolean) IS
'Locks the client''s row of pgjobs.client_room_locks before its ceilings are counted: '
'exclusively when this transaction already submitted or retried a job of the client (returns '
'true), else shared.';
