CREATE OR REPLACE FUNCTION pgjobs._generated_from(p_target regclass, p_columns text[])
RETURNS TABLE (source text, generated text)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The columns that a job writing p_target's rows may not overwrite because
-- one of p_columns (the scope, the key, ...) is a generated column computed
-- from them: each (source, generated) pair, in p_target and in every
-- partition or inheritance child of it (their expressions may differ).
-- PostgreSQL recomputes a stored generated column from the row's new values,
-- so writing `name` of a row whose scope is `lower(name)`, or the document
-- field that a scope `(data->>'tenant')::int` reads, moves the row to
-- another tenant as surely as writing the scope itself (a refused set
-- would be no boundary). The one rule of backfill's set
-- (pgjobs._compile_set) and of an import's on_duplicate update
-- (pgjobs._import_insert_sql). The sources are the expression's column
-- dependencies in pg_depend (a whole-row reference, refobjsubid 0, counts
-- as every column). Locks nothing.
WITH RECURSIVE tree (relid) AS (
    SELECT p_target::oid
    UNION
    SELECT i.inhrelid FROM tree t JOIN pg_catalog.pg_inherits i ON i.inhparent = t.relid)
SELECT DISTINCT s.attname::text, g.attname::text
  FROM tree t
  JOIN pg_catalog.pg_attribute g
    ON g.attrelid = t.relid AND g.attname = ANY (p_columns) AND g.attnum > 0
   AND NOT g.attisdropped AND g.attgenerated <> ''
  JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = t.relid AND ad.adnum = g.attnum
  JOIN pg_catalog.pg_depend d
    ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
   AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = t.relid
  JOIN pg_catalog.pg_attribute s
    ON s.attrelid = t.relid AND (s.attnum = d.refobjsubid OR d.refobjsubid = 0)
   AND s.attnum > 0 AND NOT s.attisdropped AND s.attnum <> g.attnum
 ORDER BY 1, 2;
$$;
