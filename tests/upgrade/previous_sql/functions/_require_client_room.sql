CREATE OR REPLACE FUNCTION pgjobs._require_client_room(p_submitter oid, p_kind text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A client's room for one more pending job (queued, running or paused) of
-- kind p_kind, submitted by the role of oid p_submitter: at most
-- set_defaults' max_pending_per_client jobs of every kind together (else
-- 10000), and jobs of at most max_kinds_per_client distinct custom kinds
-- (any kind but delete, backfill, export and import; else 100). Raises
-- 55006, as max_pending_writers does, with a hint naming the setting.
-- Called by every path that makes a job pending: pgjobs._insert_job_row
-- (every submit of every kind) and pgjobs._retry_as (the retried job's
-- submitter). Why: one client could otherwise fill pgjobs.jobs, every
-- claim's queue and the dashboard with jobs no worker takes, and make
-- distinct kinds without end, each a label value of /metrics and a group
-- of pgjobs.stats(). Per client, so one client at its ceiling never holds
-- another back. Administrators (pgjobs_admin members, superusers: the
-- caller, pgjobs._caller) are not held to it, nor are jobs of a role that
-- no longer exists (p_submitter NULL). The counts use
-- jobs_pending_submitter_idx and stop at the ceiling.
-- The counts are made under the client's lock (pgjobs._enter_client_room,
-- a row of pgjobs.client_room_locks, to the end of the transaction): shared
-- for a transaction's first submit or retry of the client, so a client's
-- single submits far from its ceilings never wait for each other (a lock
-- of the client held exclusively to the end of every submit's transaction
-- made a client's open transaction hold back its submits to every other
-- scope, and one role often submits for every tenant of an application:
-- the client lock of migration 0050, backed out); exclusive once the
-- transaction already submitted or retried a job of the client, so
-- transactions that submit many jobs count one after the other, each
-- seeing every job of the others (a count sees no other session's
-- uncommitted jobs: two sessions that each submitted 85 jobs in one
-- transaction under a ceiling of 100 both passed, before 0062). Near a
-- ceiling (a count within a tenth of it, at least 1: pgjobs._near_ceiling)
-- it takes the lock at strength 'near' too and counts again, with a fresh
-- snapshot (VOLATILE, under READ COMMITTED): there the client's submitting
-- transactions count one after the other, so two sessions that each saw
-- N-1 jobs no longer both pass a ceiling of N. What a count still misses
-- is the one job each of the client's other single-submit transactions
-- added far from the ceiling and has not committed: sessions submitting
-- at once can pass a ceiling by however many of them, each adding one,
-- exceed the margin (a role's CONNECTION LIMIT bounds how many such
-- sessions it has). Under REPEATABLE READ or SERIALIZABLE both counts use
-- the transaction's first snapshot: jobs the client's other transactions
-- committed after it are not seen, so such a transaction can pass a
-- ceiling by up to a whole ceiling (docs/operations.md says so).
-- A transaction that holds the lock exclusively or near a ceiling holds
-- back the client's other submits and retries until it ends, not other
-- clients' nor administrators'; a call acting for another role (a retry of
-- the client's job by a role with the kind's privilege, or an
-- administrator) never takes the client's lock (pgjobs._lock_client_room).
-- Locks: the client's row of pgjobs.client_room_locks.
DECLARE
    v_caller text;
    v_own boolean;
    v_defaults jsonb;
    v_max integer;
    v_max_kinds integer;
    v_pending integer;
    v_kinds integer;
    v_locked boolean := false;
BEGIN
    v_caller := pgjobs._caller();  -- once: it reads the call stack
    IF p_submitter IS NULL OR pg_has_role(v_caller, 'pgjobs_admin', 'MEMBER') THEN
        RETURN;
    END IF;
    v_own := coalesce(p_submitter = (SELECT r.oid FROM pg_catalog.pg_roles r
                                      WHERE r.rolname = v_caller), false);
    v_defaults := pgjobs._defaults();
    v_max := coalesce((v_defaults ->> 'max_pending_per_client')::integer, 10000);
    v_max_kinds := coalesce((v_defaults ->> 'max_kinds_per_client')::integer, 100);
    v_locked := pgjobs._enter_client_room(p_submitter, v_own);
    LOOP
        SELECT count(*) INTO v_pending
          FROM (SELECT 1 FROM pgjobs.jobs j
                 WHERE j.submitted_by_oid = p_submitter
                   AND j.status IN ('queued', 'running', 'paused')
                 LIMIT v_max) s;
        IF NOT v_locked AND pgjobs._near_ceiling(v_pending, v_max) THEN
            PERFORM pgjobs._lock_client_room(p_submitter, 'near', v_own);
            v_locked := true;
            CONTINUE;  -- count again under the lock
        END IF;
        IF v_pending >= v_max THEN
            RAISE EXCEPTION 'role % already has % jobs queued, running or paused, the most an '
                            'administrator allows a client',
                            coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r
                                       WHERE r.oid = p_submitter)::text, p_submitter::text),
                            v_max
                USING ERRCODE = '55006',
                HINT = format('Wait for some to end (pgjobs.jobs), cancel those no longer '
                              'needed with pgjobs.cancel(id), or ask an administrator to raise '
                              'the ceiling with '
                              'pgjobs.set_defaults(''{"max_pending_per_client": N}'') '
                              '(now %s).', v_max);
        END IF;
        IF pgjobs._builtin_kind(p_kind)
           OR EXISTS (SELECT 1 FROM pgjobs.jobs j
                       WHERE j.submitted_by_oid = p_submitter AND j.kind = p_kind
                         AND j.status IN ('queued', 'running', 'paused')) THEN
            RETURN;  -- no new kind
        END IF;
        -- The client's distinct pending kinds, one index probe each (a loose
        -- index scan of jobs_pending_submitter_idx), up to the ceiling.
        WITH RECURSIVE k(kind) AS (
            (SELECT j.kind FROM pgjobs.jobs j
              WHERE j.submitted_by_oid = p_submitter
                AND j.status IN ('queued', 'running', 'paused')
              ORDER BY j.kind LIMIT 1)
            UNION ALL
            SELECT (SELECT j.kind FROM pgjobs.jobs j
                     WHERE j.submitted_by_oid = p_submitter
                       AND j.status IN ('queued', 'running', 'paused')
                       AND j.kind > k.kind
                     ORDER BY j.kind LIMIT 1)
              FROM k WHERE k.kind IS NOT NULL)
        SELECT count(*) INTO v_kinds
          FROM (SELECT 1 FROM k WHERE k.kind IS NOT NULL AND NOT pgjobs._builtin_kind(k.kind)
                 LIMIT v_max_kinds) s;
        IF NOT v_locked AND pgjobs._near_ceiling(v_kinds, v_max_kinds) THEN
            PERFORM pgjobs._lock_client_room(p_submitter, 'near', v_own);
            v_locked := true;
            CONTINUE;  -- count again under the lock
        END IF;
        IF v_kinds >= v_max_kinds THEN
            RAISE EXCEPTION 'role % already has jobs of % custom kinds queued, running or '
                            'paused, the most an administrator allows a client; % would be '
                            'one more',
                            coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r
                                       WHERE r.oid = p_submitter)::text, p_submitter::text),
                            v_max_kinds, quote_literal(p_kind)
                USING ERRCODE = '55006',
                HINT = format('Submit it under one of the kinds already pending (a kind names '
                              'what a worker does; put what varies in the payload), wait for '
                              'the jobs of a kind to end, or ask an administrator to raise the '
                              'ceiling with pgjobs.set_defaults(''{"max_kinds_per_client": N}'') '
                              '(now %s).', v_max_kinds);
        END IF;
        RETURN;
    END LOOP;
END
$$;
