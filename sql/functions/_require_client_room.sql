CREATE OR REPLACE FUNCTION pgjobs._require_client_room(p_submitter oid, p_kind text)
RETURNS void
LANGUAGE plpgsql
STABLE
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
-- Locks nothing, on purpose: a lock of the client held to the end of each
-- submit's transaction would make a client's open transaction hold back
-- its submits to every other scope (tests/test_trust_advisory_locks.py).
-- So a count sees the client's committed jobs and its own transaction's:
-- sessions of one client submitting at once, each in a transaction not
-- yet committed, can together pass a ceiling by what each adds before it
-- commits (at most the ceiling each; a role's CONNECTION LIMIT bounds
-- how many such sessions it has).
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
