CREATE OR REPLACE FUNCTION pgjobs._import_conflict_columns(p_reg pgjobs.target_registry)
RETURNS text[]
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The columns an import names in ON CONFLICT: those of a valid, non-partial
-- unique index (or primary key) of plain columns that is on (scope, key),
-- in either order, else on key alone (unique across scopes: a record whose
-- key another scope holds then counts as a duplicate that is never
-- touched). NULL when there is none. Not a DEFERRABLE one: PostgreSQL
-- refuses it as ON CONFLICT's arbiter (55000 at the first batch, after
-- the submit accepted the job; h81). Locks nothing.
SELECT array_agg(a.attname ORDER BY k.ord)
  FROM (SELECT i.indexrelid, i.indkey
          FROM pg_catalog.pg_index i
         WHERE i.indrelid = p_reg.target AND i.indisunique AND i.indisvalid
           AND i.indimmediate
           AND i.indpred IS NULL AND i.indexprs IS NULL
           AND NOT EXISTS (
               SELECT 1 FROM unnest(i.indkey::int2[]) c(n)
                WHERE c.n NOT IN (
                    SELECT a2.attnum FROM pg_catalog.pg_attribute a2
                     WHERE a2.attrelid = p_reg.target
                       AND a2.attname IN (p_reg.scope_column, p_reg.key_column)))
           AND EXISTS (
               SELECT 1 FROM unnest(i.indkey::int2[]) c(n)
                 JOIN pg_catalog.pg_attribute a3
                   ON a3.attrelid = p_reg.target AND a3.attnum = c.n
                WHERE a3.attname = p_reg.key_column)
         ORDER BY cardinality(i.indkey::int2[]) DESC, i.indexrelid
         LIMIT 1) x
 CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY k(n, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = p_reg.target AND a.attnum = k.n;
$$;
