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
-- partitioned target read as 0 pages would be "sampled" whole. Reads
-- pg_inherits, not pg_partition_tree, which locks every partition: a job
-- of one scope must not wait for a lock on another tenant's partition.
-- Locks nothing.
WITH RECURSIVE tree (relid) AS (
    SELECT p_target::oid
    UNION
    SELECT i.inhrelid FROM tree t JOIN pg_catalog.pg_inherits i ON i.inhparent = t.relid)
SELECT coalesce(sum(greatest(c.relpages, 0)), 0)::bigint
  FROM tree t
  JOIN pg_catalog.pg_class c ON c.oid = t.relid
 WHERE c.relkind <> 'p';
$$;
