DROP FUNCTION IF EXISTS pgjobs._lock_client_room(oid);
DROP FUNCTION IF EXISTS pgjobs._lock_client_room(oid, text);

CREATE OR REPLACE FUNCTION pgjobs._lock_client_room(p_submitter oid, p_strength text,
                                                    p_own boolean)
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
-- 0057), which no client can lock (it needs UPDATE on the table), at one
-- of three strengths (pgjobs._enter_client_room says which):
--   'share'     FOR KEY SHARE: a transaction's first submit (or retry) of
--               the client, far from its ceilings. Such transactions never
--               wait for each other; they wait for an 'exclusive' holder.
--   'near'      FOR NO KEY UPDATE: a count within a tenth of a ceiling
--               (pgjobs._near_ceiling), counted again under it. Near a
--               ceiling the client's transactions count one after the
--               other; taken over 'share' without waiting for other
--               'share' holders (the two do not conflict), so two sessions
--               near a ceiling cannot deadlock.
--   'exclusive' FOR UPDATE: a transaction that already counts a job of the
--               client (its second submit on): it waits for every other
--               transaction of the client that submitted and holds the
--               others back until it ends, so a count sees every job of
--               the client but those of transactions that hold no lock.
-- 'share' makes no row: with none, nothing holds the client exclusively
-- (it would have made one; an uncommitted one is waited for).
-- A row, never an advisory lock, which any role could take and hold,
-- hanging the client (tests/test_trust_advisory_locks.py). Only the
-- client's own calls take it: a call acting for another role (a retry of
-- the client's job by a role with the kind's privilege on its target, or
-- by an administrator) counts without it, else that role could hold the
-- row in an open transaction and make the client's submits wait (review
-- of h44). Two transactions of one client that each submitted a job and
-- then each submit another wait for each other ('share' then
-- 'exclusive'), and a first submit waiting 'share' or 'near' can close a
-- cycle with a holder that waits for a row the submitter locked:
-- PostgreSQL ends one of them (40P01), here, at every strength, with a
-- message that says so and a hint. Locks: that row, in the client's own
-- calls.
BEGIN
    IF p_own IS NOT TRUE THEN
        RETURN;
    END IF;
    -- At once when no transaction holds the row at a conflicting strength
    -- (the common case): no wait, so no deadlock to name and no
    -- subtransaction (the block below costs one per call).
    IF p_strength = 'share' THEN
        PERFORM FROM pgjobs.client_room_locks l
         WHERE l.submitter_oid = p_submitter FOR KEY SHARE SKIP LOCKED;
    ELSIF p_strength = 'near' THEN
        PERFORM FROM pgjobs.client_room_locks l
         WHERE l.submitter_oid = p_submitter FOR NO KEY UPDATE SKIP LOCKED;
    ELSE
        PERFORM FROM pgjobs.client_room_locks l
         WHERE l.submitter_oid = p_submitter FOR UPDATE SKIP LOCKED;
    END IF;
    IF FOUND THEN
        RETURN;
    END IF;
    -- Else it may wait: one exception block over every wait (see its handler).
    BEGIN
        LOOP
            IF p_strength = 'share' THEN
                PERFORM FROM pgjobs.client_room_locks l
                 WHERE l.submitter_oid = p_submitter FOR KEY SHARE;
                EXIT WHEN FOUND;
                -- No row: a 'share' never makes one (made here, uncommitted, it
                -- would make the client's other first submits wait for this
                -- transaction). But one may be being made, uncommitted, by a
                -- transaction that holds it exclusively: the insert waits for
                -- that one to end (then conflicts, and the row is locked
                -- below); else it is undone at once.
                BEGIN
                    INSERT INTO pgjobs.client_room_locks (submitter_oid) VALUES (p_submitter)
                        ON CONFLICT DO NOTHING;
                    RAISE EXCEPTION 'undo the probe' USING ERRCODE = 'P0002',
                        HINT = 'None needed: caught at once, below (never seen by a caller).';
                EXCEPTION WHEN no_data_found THEN
                    NULL;
                END;
                PERFORM FROM pgjobs.client_room_locks l
                 WHERE l.submitter_oid = p_submitter FOR KEY SHARE;
                RETURN;  -- no row (none locked, none being made): nothing to wait for
            ELSIF p_strength = 'near' THEN
                PERFORM FROM pgjobs.client_room_locks l
                 WHERE l.submitter_oid = p_submitter FOR NO KEY UPDATE;
            ELSE
                PERFORM FROM pgjobs.client_room_locks l
                 WHERE l.submitter_oid = p_submitter FOR UPDATE;
            END IF;
            EXIT WHEN FOUND;
            INSERT INTO pgjobs.client_room_locks (submitter_oid) VALUES (p_submitter)
                ON CONFLICT DO NOTHING;
        END LOOP;
    EXCEPTION WHEN deadlock_detected THEN
        -- Every wait above, at every strength (and the probe's insert): a
        -- first submit waiting 'share' behind a bulk transaction, or 'near'
        -- behind another near the ceiling, can close a cycle as well (with a
        -- row of the application the holder then waits for); before h59 only
        -- the 'exclusive' wait said what happened, the others raised the bare
        -- "deadlock detected" on client_room_locks with no hint.
        RAISE EXCEPTION '%', format(
            CASE WHEN p_strength = 'exclusive'
                 THEN 'two transactions of role %s that each submit several jobs ran at once; '
                      'this one was ended so the other could go on'
                 ELSE 'a transaction of role %s waited for the lock of the role''s ceilings held '
                      'by another that waited for this one; this one was ended so the other '
                      'could go on' END,
            coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r
                       WHERE r.oid = p_submitter)::text, p_submitter::text))
            USING ERRCODE = '40P01',
            DETAIL = 'A submit (or retry) of a client waits for the client''s transactions that '
                     'hold the lock its ceilings are counted under (a second job of a transaction '
                     'waits for every other that submitted, a first for one that submits several '
                     'or is near a ceiling); two transactions waited for each other.',
            HINT = 'Roll back and run the transaction again; submit a client''s jobs in bulk '
                   'from one session at a time (or one job per transaction), and lock rows of '
                   'your own before submitting, to avoid it.';
    END;
END
$$;

COMMENT ON FUNCTION pgjobs._lock_client_room(oid, text, boolean) IS
'Locks the row of pgjobs.client_room_locks of the role of the given oid (made on first use) to '
'the end of the transaction, in that role''s own calls only (the last argument), at strength ''share'' (a '
'transaction''s first submit), ''near'' (near a ceiling) or ''exclusive'' (a transaction that '
'already submitted for the client): the client''s ceilings are counted under it.';
