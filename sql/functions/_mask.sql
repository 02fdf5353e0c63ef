CREATE OR REPLACE FUNCTION pgjobs._mask(p_target regclass, p_scope text)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The mask text of (p_target, p_scope), without a privilege check: shared
-- by pgjobs.mask (which checks) and the read functions (which checked
-- already). One `NOT coalesce((predicate), false)` per queued or running
-- delete job of the scope, ANDed in job order; 'true' when none is pending.
-- Reads pgjobs.jobs through jobs_pending_writers_idx. Locks nothing.
SELECT coalesce((
    SELECT string_agg(format('NOT coalesce((%s), false)', j.predicate), ' AND ' ORDER BY j.id)
      FROM pgjobs.jobs j
     WHERE j.target = p_target AND j.scope = p_scope
       AND j.kind = 'delete' AND j.status IN ('queued', 'running')), 'true');
$$;
