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
-- Exact under concurrency: before counting it writes the client's row
-- of pgjobs.client_locks (made on first use; migration 0050), held to the
-- end of the transaction, so the submitting transactions of one client
-- count one after the other, and each count (a fresh snapshot: VOLATILE,
-- under READ COMMITTED) sees the jobs of those that committed before it.
-- Under REPEATABLE READ or SERIALIZABLE a submit whose snapshot misses
-- such a transaction's jobs raises 40001 at that write (run it again).
-- The cost: a client's transaction that submitted holds back the client's
-- other submits and retries (of every scope, not other clients', not
-- administrators') until it ends, as one row lock does. A row, never an
-- advisory lock, which any role could take and hold, hanging the client
-- (tests/test_trust_advisory_locks.py). Deadlocks: it is taken before
-- the scope's gate (pgjobs._lock_scope) in both callers; a transaction
-- that submits as two client roles in turn may meet another doing the
-- reverse, which PostgreSQL breaks with 40P01.
-- Locks: the client's row of pgjobs.client_locks.
DECLARE
    v_defaults jsonb;
    v_max integer;
    v_max_kinds integer;
    v_pending integer;
    v_kinds integer;
BEGIN
    IF p_submitter IS NULL OR pg_has_role(pgjobs._caller(), 'pgjobs_admin', 'MEMBER') THEN
        RETURN;
    END IF;
    INSERT INTO pgjobs.client_locks AS l (submitter_oid) VALUES (p_submitter)
        ON CONFLICT (submitter_oid) DO UPDATE SET submitter_oid = excluded.submitter_oid;
    v_defaults := pgjobs._defaults();
    v_max := coalesce((v_defaults ->> 'max_pending_per_client')::integer, 10000);
    v_max_kinds := coalesce((v_defaults ->> 'max_kinds_per_client')::integer, 100);
    SELECT count(*) INTO v_pending
      FROM (SELECT 1 FROM pgjobs.jobs j
             WHERE j.submitted_by_oid = p_submitter
               AND j.status IN ('queued', 'running', 'paused')
             LIMIT v_max) s;
    IF v_pending >= v_max THEN
        RAISE EXCEPTION 'role % already has % jobs queued, running or paused, the most an '
                        'administrator allows a client',
                        coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r
                                   WHERE r.oid = p_submitter)::text, p_submitter::text), v_max
            USING ERRCODE = '55006',
            HINT = format('Wait for some to end (pgjobs.jobs), cancel those no longer needed '
                          'with pgjobs.cancel(id), or ask an administrator to raise the '
                          'ceiling with pgjobs.set_defaults(''{"max_pending_per_client": N}'') '
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
    IF v_kinds >= v_max_kinds THEN
        RAISE EXCEPTION 'role % already has jobs of % custom kinds queued, running or paused, '
                        'the most an administrator allows a client; % would be one more',
                        coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r
                                   WHERE r.oid = p_submitter)::text, p_submitter::text),
                        v_max_kinds, quote_literal(p_kind)
            USING ERRCODE = '55006',
            HINT = format('Submit it under one of the kinds already pending (a kind names what '
                          'a worker does; put what varies in the payload), wait for the jobs of '
                          'a kind to end, or ask an administrator to raise the ceiling with '
                          'pgjobs.set_defaults(''{"max_kinds_per_client": N}'') (now %s).',
                          v_max_kinds);
    END IF;
END
$$;
