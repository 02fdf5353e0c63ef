CREATE OR REPLACE FUNCTION pgjobs._writes(p_kind text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Is p_kind a writing kind: do its jobs change rows of their target, so
-- that they take their scope's gate and the throttling options? The one
-- definition is the generated column pgjobs.jobs.writes (migration 0018),
-- on which the gate's partial indexes are built. Routines that hold a job
-- row read that column; this evaluates the column's own expression for a
-- kind that has no row yet (pgjobs._insert_job, before its INSERT), so the
-- answer cannot drift from the indexes. Locks nothing.
DECLARE
    v_expr   text;
    v_writes boolean;
BEGIN
    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) INTO STRICT v_expr
      FROM pg_catalog.pg_attrdef d
      JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
     WHERE d.adrelid = 'pgjobs.jobs'::regclass AND a.attname = 'writes';
    EXECUTE format('SELECT %s FROM (SELECT $1::text AS kind) j', v_expr)
       INTO v_writes USING p_kind;
    RETURN v_writes;
END
$$;
