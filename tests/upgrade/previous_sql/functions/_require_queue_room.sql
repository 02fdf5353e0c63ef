CREATE OR REPLACE FUNCTION pgjobs._require_queue_room(p_target regclass, p_scope text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The most writing jobs (queued, running or paused) one (p_target, p_scope)
-- may hold when a submitter who is not an administrator queues another:
-- pgjobs._max_pending_writers (set_defaults' max_pending_writers, else
-- 1000). Raises 55006 with a hint at the ceiling. Called by every path that
-- queues a writer, right after the scope's gate lock (pgjobs._lock_scope:
-- pgjobs._insert_job_row for a writing submit, pgjobs._retry_as for a
-- retry), so two submits of one scope cannot both take the last place.
-- Why a ceiling: a writer waiting behind its scope's gate stays in the
-- claim's queue, and every claim of every tenant (the runner's, a
-- worker's) asks the gate about each one ahead of the job it hands out; a
-- client that queued 20,000 deletes of one scope made each claim take
-- about 3 s, the runners' budgets going to the walk instead of other
-- tenants' pages. Administrators (pgjobs_admin members, superusers) are
-- not held to it. The count stops at the ceiling (jobs_pending_writers_idx).
-- Locks nothing (the caller holds the scope's lock).
DECLARE
    v_max integer;
    v_pending integer;
BEGIN
    IF pg_has_role(pgjobs._caller(), 'pgjobs_admin', 'MEMBER') THEN
        RETURN;
    END IF;
    v_max := pgjobs._max_pending_writers();
    SELECT count(*) INTO v_pending
      FROM (SELECT 1 FROM pgjobs.jobs w
             WHERE w.target = p_target AND w.scope = p_scope
               AND w.writes
               AND w.status IN ('queued', 'running', 'paused')
             LIMIT v_max) s;
    IF v_pending >= v_max THEN
        RAISE EXCEPTION '% scope % already has % writing jobs queued, running or paused, '
                        'the most an administrator allows a client', p_target, p_scope, v_max
            USING ERRCODE = '55006',
            HINT = format('Wait for some to end (pgjobs.jobs), cancel those no longer needed '
                          'with pgjobs.cancel(id), or ask an administrator to raise the '
                          'ceiling with pgjobs.set_defaults(''{"max_pending_writers": N}'') '
                          '(now %s).', v_max);
    END IF;
END
$$;
