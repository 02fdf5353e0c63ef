-- pgjobs._writes(kind) is compiled here from the one definition of a
-- writing kind, the expression of the generated column pgjobs.jobs.writes
-- (migration 0018), on every migrate (function files are applied after the
-- migrations), so it answers exactly as the column does, at the cost of a
-- plain SQL function: evaluating the column's expression at each call
-- instead (pg_get_expr and EXECUTE) cost 100 times as much per submit.
DO $do$
DECLARE
    v_expr text;
BEGIN
    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) INTO v_expr
      FROM pg_catalog.pg_attrdef d
      JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
     WHERE d.adrelid = 'pgjobs.jobs'::regclass AND a.attname = 'writes';
    IF v_expr IS NULL THEN
        RAISE EXCEPTION 'pgjobs.jobs has no generated column writes' USING ERRCODE = '55000',
            HINT = 'Apply the migrations first (pgjobs migrate).';
    END IF;
    EXECUTE pg_catalog.format($create$
CREATE OR REPLACE FUNCTION pgjobs._writes(p_kind text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $body$
-- Is p_kind a writing kind: do its jobs change rows of their target, so
-- that they take their scope's gate and the throttling options? The
-- expression below is the generated column pgjobs.jobs.writes (migration
-- 0018), on which the gate's partial indexes are built, copied in by
-- sql/functions/_writes.sql. Routines that hold a job row read the column;
-- this answers for a kind that has no row yet (pgjobs._insert_job, before
-- its INSERT). Locks nothing.
SELECT %s FROM (SELECT p_kind AS kind) j;
$body$
$create$, v_expr);
END
$do$;
