CREATE OR REPLACE FUNCTION pgjobs._lock_client_room(p_submitter oid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The lock of one client's ceilings, to the end of the transaction: the
-- client's row of pgjobs.client_room_locks (made on first use, migration
-- 0057) locked FOR UPDATE, which no client can lock (it needs UPDATE on
-- the table). pgjobs._require_client_room and
-- pgjobs._require_client_kept_room take it only when a count they made
-- without it is near its ceiling (pgjobs._near_ceiling), then count again:
-- near a ceiling a client's submitting transactions count one after the
-- other, each seeing the jobs of those that committed before it; far from
-- it they take no lock and never wait for each other. A row, never an
-- advisory lock, which any role could take and hold, hanging the client
-- (tests/test_trust_advisory_locks.py). Locks: that row.
BEGIN
    LOOP
        PERFORM FROM pgjobs.client_room_locks l
         WHERE l.submitter_oid = p_submitter
           FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO pgjobs.client_room_locks (submitter_oid) VALUES (p_submitter)
            ON CONFLICT DO NOTHING;
    END LOOP;
END
$$;

COMMENT ON FUNCTION pgjobs._lock_client_room(oid) IS
'Locks the row of pgjobs.client_room_locks of the role of the given oid (made on first use) to '
'the end of the transaction: the client''s ceilings are counted under it when near them.';
