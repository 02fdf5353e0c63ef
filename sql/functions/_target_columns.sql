CREATE OR REPLACE FUNCTION pgjobs._target_columns(p_target regclass)
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The columns of p_target as a job is compiled against them: one object per
-- column (its number n, name, type, type modifier and collation), in column
-- order. Stored in pgjobs.jobs.target_columns at submit and compared by
-- pgjobs._columns_changed before every page, chunk and batch (which hold
-- the table: pgjobs._hold_target); a submit notes them before it compiles
-- (pgjobs._compiling_against). Locks nothing.
SELECT coalesce(jsonb_agg(jsonb_build_object('n', a.attnum, 'name', a.attname,
                                             'type', a.atttypid, 'typmod', a.atttypmod,
                                             'collation', a.attcollation)
                          ORDER BY a.attnum), '[]'::jsonb)
  FROM pg_catalog.pg_attribute a
 WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped
$$;
