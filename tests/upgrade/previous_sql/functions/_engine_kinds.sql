CREATE OR REPLACE FUNCTION pgjobs._engine_kinds()
RETURNS text[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The kinds the engine runs itself (pgjobs.run, pgjobs.run_job), written
-- once: every other routine asks `kind = ANY (pgjobs._engine_kinds())`
-- (tests/test_engine_kinds.py refuses another copy of the list). IMMUTABLE
-- without arguments, so the planner evaluates it once when it plans the
-- statement and the plan holds the constant array: a cached PL/pgSQL plan
-- costs what `kind IN ('delete', 'backfill')` cost, and index conditions on
-- kind still match. The kinds that write rows of a target are pgjobs.jobs.writes
-- (migration 0018), which adds import. Locks nothing.
SELECT ARRAY['delete', 'backfill']
$$;
COMMENT ON FUNCTION pgjobs._engine_kinds() IS
'The kinds of job the engine runs itself (pgjobs.run, pgjobs.run_job): delete and backfill. The one list every routine asks; folded to a constant when a statement is planned.';
