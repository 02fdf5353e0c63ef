CREATE OR REPLACE FUNCTION pgjobs._inserts_below(p_target regclass)
RETURNS bigint
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The rows inserted so far by this transaction (its subtransactions
-- included, pg_stat_get_xact_tuples_inserted) into p_target and the tables
-- that inherit from it, at any depth: pgjobs.import_batch reads it before
-- and after each statement, to count the records a BEFORE INSERT trigger of
-- the target routed into a child (the statement counts no row for those).
-- The target itself is in the sum, as a statement's own count already
-- holds the rows a DO INSTEAD rule put into a child: the caller takes the
-- larger of the two, never their sum (which counted each such record
-- twice). Locks nothing.
WITH RECURSIVE below(rel) AS (
    SELECT p_target::oid
    UNION
    SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN below b ON i.inhparent = b.rel)
SELECT coalesce(sum(pg_catalog.pg_stat_get_xact_tuples_inserted(b.rel)), 0)::bigint
  FROM below b
$$;
