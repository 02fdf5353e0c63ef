CREATE OR REPLACE FUNCTION pgjobs._free_index_name(p_target regclass, p_columns name[])
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The name PostgreSQL-style tooling would give an index of p_target on
-- p_columns (table_col1_col2_idx, cut to 63 bytes), with a number appended
-- when that name is taken in the table's schema. Used by the hints of
-- register_target and the fixes of doctor, so both print the same
-- statement. Locks nothing.
WITH base AS (
    SELECT c.relnamespace AS nsp,
           format('%s_%s_idx', c.relname, array_to_string(p_columns, '_')) AS name
      FROM pg_catalog.pg_class c WHERE c.oid = p_target
)
SELECT s.name
  FROM base b,
       LATERAL (SELECT g.n, CASE WHEN g.n = 0 THEN left(b.name, 63)
                                 ELSE left(b.name, 62 - length(g.n::text)) || g.n::text
                            END AS name
                  FROM generate_series(0, 1000) AS g(n)) s
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                    WHERE c.relname = s.name AND c.relnamespace = b.nsp)
 ORDER BY s.n
 LIMIT 1;
$$;
