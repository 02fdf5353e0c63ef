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
-- column (its number n, name, type, type modifier and collation, and for a
-- column of an enum type its labels), in column order. Stored in pgjobs.jobs.target_columns at submit and compared by
-- pgjobs._columns_changed before every page, chunk and batch (which hold
-- the table: pgjobs._hold_target); a submit notes them before it compiles
-- (pgjobs._compiling_against). Locks nothing.
SELECT coalesce(jsonb_agg(jsonb_build_object('n', a.attnum, 'name', a.attname,
                                             'type', a.atttypid, 'typmod', a.atttypmod,
                                             'collation', a.attcollation)
                          || CASE WHEN l.labels IS NOT NULL
                                  THEN jsonb_build_object('labels', l.labels)
                                  ELSE '{}'::jsonb END
                          ORDER BY a.attnum), '[]'::jsonb)
  FROM pg_catalog.pg_attribute a
  -- An enum's labels, by their oids: a filter names a value by its label
  -- (`status = 'active'::mood`), read again at every page, so labels
  -- renamed under a pending job (one renamed away and another given its
  -- label) made it act on other rows. The column's type, the base type of
  -- a domain and an array's element type, to two levels; labels added
  -- since are no change.
  CROSS JOIN LATERAL (
       SELECT jsonb_object_agg(e.oid::text, e.enumlabel) AS labels
         FROM pg_catalog.pg_enum e
        WHERE e.enumtypid IN (
              SELECT u.t
                FROM pg_catalog.pg_type t1
                LEFT JOIN pg_catalog.pg_type t2
                       ON t2.oid IN (t1.typbasetype, t1.typelem)
                CROSS JOIN LATERAL (VALUES (t1.oid), (t1.typbasetype), (t1.typelem),
                                           (t2.typbasetype), (t2.typelem)) u(t)
               WHERE t1.oid = a.atttypid)) l
 WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped
$$;
