CREATE OR REPLACE FUNCTION pgjobs._relation_pages(p_target regclass)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The heap pages of p_target as the statistics last counted them
-- (pg_class.relpages): of the table itself, or of every partition of a
-- partitioned table (whose own relpages is 0), for the sample sizes of
-- the runner's first call (pgjobs._run_page, pgjobs._page_strategy): a
-- partitioned target read as 0 pages would be "sampled" whole. Locks
-- nothing.
SELECT CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(greatest(l.relpages, 0)), 0)::bigint
                    FROM pg_catalog.pg_partition_tree(p_target) t
                    JOIN pg_catalog.pg_class l ON l.oid = t.relid
                   WHERE t.isleaf)
            ELSE greatest(c.relpages, 0)::bigint END
  FROM pg_catalog.pg_class c
 WHERE c.oid = p_target;
$$;
