CREATE OR REPLACE FUNCTION pgjobs._unique_key_hint(p_reg pgjobs.target_registry)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What to do when an import's on_duplicate skip / update finds no unique
-- index on (scope, key): the CREATE UNIQUE INDEX statement, unless the
-- target is partitioned (at any level) by another column or an
-- expression; PostgreSQL then refuses a unique index without that column,
-- so no statement can help and the hint says what can (used by
-- _submit_import_as and _import_insert_sql). Locks nothing.
SELECT CASE
    WHEN EXISTS (
        SELECT 1
          FROM pg_catalog.pg_partition_tree(p_reg.target) t
          JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = t.relid
         CROSS JOIN LATERAL unnest(pt.partattrs::int2[]) k(n)
         WHERE k.n = 0
            OR (SELECT a.attname FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = t.relid AND a.attnum = k.n)
               NOT IN (p_reg.scope_column, p_reg.key_column))
    THEN format('%s is partitioned by a column other than %I and %I (e.g. its created_at), '
                'and PostgreSQL allows no unique index without the partitioning columns: '
                'import with on_duplicate "error" (the default) into such a table, or '
                'partition it by %I (LIST or HASH) instead.', p_reg.target,
                p_reg.scope_column, p_reg.key_column, p_reg.scope_column)
    ELSE format('CREATE UNIQUE INDEX ON %s (%I, %I);', p_reg.target, p_reg.scope_column,
                p_reg.key_column)
END;
$$;
