-- pgjobs._writer_may_start is compiled here from the one definition of the
-- gate, pgjobs._gate_clause() (applied before this file), on every migrate;
-- pgjobs._gate_holder is compiled from the same text.
DO $do$
BEGIN
    EXECUTE pg_catalog.format($create$
CREATE OR REPLACE FUNCTION pgjobs._writer_may_start(p_target regclass, p_scope text,
                                                    p_place bigint)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $body$
-- The gate: may the writing job of (p_target, p_scope) whose place in the
-- scope's queue is p_place (its coalesce(gate_order, id)) start now? Only
-- when no job holds the gate in front of it, by the rule of
-- pgjobs._gate_clause() (compiled in below by sql/functions/_writer_may_start.sql;
-- pgjobs._gate_holder names the job that holds it, by the same text).
-- Used by pgjobs.claim and pgjobs._claim_id, and by pgjobs._insert_job's
-- on_conflict: reject (with the place after every other). STABLE: it reads with the caller's
-- snapshot, like the subquery it replaces. A function rather than an
-- inline subquery because claim was planned afresh on every call (its LIMIT
-- is a parameter; its plan is generic now, see pgjobs.claim, but
-- pgjobs._claim_id and _insert_job ask too), and planning the correlated
-- subquery against the jobs table's partial indexes cost about 0.2 ms a
-- claim; this query is planned once per session. Locks nothing.
BEGIN
    RETURN NOT EXISTS (
        SELECT 1 FROM pgjobs.jobs w
         WHERE %s);
END
$body$
$create$, pgjobs._gate_clause());
END
$do$;
