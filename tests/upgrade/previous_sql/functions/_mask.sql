CREATE OR REPLACE FUNCTION pgjobs._mask(p_target regclass, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The mask text of (p_target, p_scope), without a privilege check: shared
-- by pgjobs.mask (which checks) and the read functions (which checked
-- already). One `NOT coalesce((predicate), false)` per queued, running or paused
-- delete job of the scope, ANDed in job order; 'true' when none is pending.
-- Reads pgjobs.jobs through jobs_pending_writers_idx. Locks nothing.
-- PL/pgSQL rather than SQL only so that the query's plan is cached for the
-- session: a SQL function's body is planned again in every transaction,
-- which was a third of the overhead of a pgjobs.visible page.
DECLARE
    v_mask text;
BEGIN
    SELECT string_agg(format('NOT coalesce((%s), false)', j.predicate), ' AND ' ORDER BY j.id)
      INTO v_mask
      FROM pgjobs.jobs j
     WHERE j.target = p_target AND j.scope = p_scope
       AND j.writes AND j.kind = 'delete' AND j.status IN ('queued', 'running', 'paused');
    RETURN coalesce(v_mask, 'true');
END
$$;
