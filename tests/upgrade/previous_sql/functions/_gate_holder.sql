CREATE OR REPLACE FUNCTION pgjobs._gate_holder(p_target regclass, p_scope text,
                                               p_place bigint)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Which job a writing job of (p_target, p_scope) whose place in the scope's
-- queue is p_place (its coalesce(gate_order, id)) waits behind: the running
-- writer of the scope, else the first writer queued or paused ahead of it
-- that holds the gate; NULL when none does. The same rule as the gate
-- itself (pgjobs._writer_may_start: whenever that says no, this names the
-- job), for `pgjobs status` and `pgjobs watch` (pgjobs.queries.GET_JOB).
-- SECURITY INVOKER on purpose: it reads pgjobs.jobs as its caller, so the
-- row-level policy jobs_client_read applies and a client is told only the
-- id of a job it may see itself (another role's job on a target it may not
-- read, or of a scope outside its pgjobs.allowed_scopes, stays NULL).
-- Locks nothing.
SELECT w.id
  FROM pgjobs.jobs w
 WHERE w.target = p_target AND w.scope = p_scope
   AND w.writes
   AND w.status IN ('queued', 'running', 'paused')
   AND coalesce(w.gate_order, w.id) <> p_place
   AND (w.status = 'running' OR coalesce(w.gate_order, w.id) < p_place)
   AND (w.status = 'running' OR w.started_at IS NOT NULL
        OR (w.run_at <= now()
            AND (w.kind IN ('delete', 'backfill')
                 OR w.run_at > now() - interval '10 minutes')))
 ORDER BY w.status = 'running' DESC, coalesce(w.gate_order, w.id)
 LIMIT 1
$$;
