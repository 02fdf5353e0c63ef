-- pgjobs._gate_holder is compiled here from the one definition of the gate,
-- pgjobs._gate_clause() (applied before this file), on every migrate;
-- pgjobs._writer_may_start is compiled from the same text.
DO $do$
BEGIN
    EXECUTE pg_catalog.format($create$
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
AS $body$
-- Which job a writing job of (p_target, p_scope) whose place in the scope's
-- queue is p_place (its coalesce(gate_order, id)) waits behind: the running
-- writer of the scope, else the first writer queued or paused ahead of it
-- that holds the gate; NULL when none does. The rule is pgjobs._gate_clause()'s
-- (compiled in below by sql/functions/_gate_holder.sql), the very text of
-- the gate, pgjobs._writer_may_start: whenever that says no, this names the
-- job. For `pgjobs status` and `pgjobs watch` (pgjobs.queries.GET_JOB).
-- SECURITY INVOKER on purpose: it reads pgjobs.jobs as its caller, so the
-- row-level policy jobs_client_read applies and a client is told only the
-- id of a job it may see itself (another role's job on a target it may not
-- read, or of a scope outside its pgjobs.allowed_scopes, stays NULL).
-- Locks nothing.
SELECT w.id
  FROM pgjobs.jobs w
 WHERE %s
 ORDER BY w.status = 'running' DESC, coalesce(w.gate_order, w.id)
 LIMIT 1
$body$
$create$, pgjobs._gate_clause());
END
$do$;
