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
-- (tests/test_trust_advisory_locks.py). Only the client's own calls take
-- it: a call acting for another role (a retry of the client's job by a role
-- with the kind's privilege on its target, or by an administrator) counts
-- without it, else that role could hold the row in an open transaction and
-- make the client's submits near a ceiling wait (review of h44). Locks:
-- that row, in the client's own calls.
BEGIN
    IF p_submitter IS DISTINCT FROM (SELECT r.oid FROM pg_catalog.pg_roles r
                                      WHERE r.rolname = pgjobs._caller()) THEN
        RETURN;
    END IF;
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
'the end of the transaction, in that role''s own calls only: the client''s ceilings are counted '
'under it when near them.';
