-- The signature before the job's run_at was passed: never in a release,
-- dropped so that no install keeps both.
DROP FUNCTION IF EXISTS pgjobs._tenant_turn(text, regclass, text);

CREATE OR REPLACE FUNCTION pgjobs._tenant_turn(p_kind text, p_target regclass, p_scope text,
                                               p_run_at timestamptz)
RETURNS timestamptz
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The queued_at an export or import joins the queue with, at its submit
-- (pgjobs._insert_job_row), retry (pgjobs._retry_as) and resume
-- (pgjobs._resume_as): its turn between tenants. p_run_at: the job's
-- run_at (when it becomes due). An export or an import runs to its end
-- once claimed (no budget hands it back), and claims go by priority, then
-- queued_at: a tenant that queued fifty exports held every worker slot
-- until the fifty were done (fifty imports, one at a time by the gate, a
-- worker's one slot), and another tenant's job waited behind them all. One
-- queued while exports or imports of its (target, scope) are pending and
-- due before it is, or within the hour after, comes an hour after the
-- latest of them: a tenant's k-th pending job comes after the first ones
-- of every tenant that queued within those hours, and alone in the queue
-- it still goes at once (queued_at only orders jobs that are due). Its
-- turn is never before its own run_at, and a pending job's time is its
-- queued_at or run_at, whichever is later: a job scheduled a moment ahead
-- (option run_at) counted for nothing, neither as pending nor as waiting,
-- so a burst of exports submitted with run_at one second ahead took every
-- slot before another tenant's export submitted after them, as if no turn
-- existed. A job scheduled more than an hour after this one's run_at
-- pushes nothing. A retry or resume takes its turn as a submit does: a
-- tenant retrying a burst of failed exports, or pausing and resuming a
-- queued burst, queued them all at now(), ahead of every other tenant's
-- turn. Not for the runner's kinds or custom ones (now()): a job handed
-- back at the end of each budget queues again at now(), always ahead of a
-- turn an hour away, so a tenant's second delete would wait up to an hour
-- behind another tenant's multi-million-row delete (the budget's
-- round-robin serves them; tests/test_tenant_turns.py). Locks nothing.
SELECT CASE WHEN p_kind IN ('export', 'import') THEN greatest(now(), p_run_at, (
           SELECT max(greatest(p.queued_at, p.run_at)) + interval '1 hour'
             FROM pgjobs.jobs p
            WHERE p.status IN ('queued', 'running') AND p.kind IN ('export', 'import')
              AND p.target = p_target AND p.scope = p_scope
              AND p.run_at < greatest(now(), p_run_at) + interval '1 hour'))
            ELSE now() END
$$;
