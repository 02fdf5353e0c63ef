CREATE OR REPLACE FUNCTION pgjobs._nth_key(
    p_target regclass,
    p_scope_column name,
    p_scope text,
    p_key_column name,
    p_bounds text,
    p_offset bigint)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_incremental_sort = off
SET enable_indexscan = on
SET enable_indexonlyscan = on
AS $$
-- The key, as text, of the scope's row p_offset rows into the keyset walk
-- that p_bounds restricts (' AND ...' conditions on the key, written by the
-- caller with its values quoted; '' for none), in key order; NULL when the
-- walk has no such row. p_scope is the scope's typed literal
-- (pgjobs._scope_literal).
--
-- The one way pages, export chunks, parallel parts, previews and the field
-- check find where a stretch of keys ends: an index-only walk of p_offset + 1
-- entries of the (scope, key) btree, and never of another index. The plan
-- is not left to the planner's costs: with the scope's statistics refreshed
-- mid-delete (pgjobs._maybe_analyze) it walked the primary key across every
-- scope instead (23 ms against 1-2 ms for 5000 keys; issue 11). So the
-- scope is compared as `= ANY (ARRAY[scope])`: the planner takes an equality
-- to a constant as making ORDER BY scope redundant, and then the key's own
-- index delivers "key order" too; a one-element ANY is no such equality
-- (the btree still uses it as an index condition, and partitions are still
-- pruned on it), so ORDER BY scope, key is an order that only an index
-- leading with (scope, key) delivers. Any other plan needs a sort, and
-- sorts (plain and incremental), sequential and bitmap scans are disabled
-- for this function (its SET clauses). The key is cast to text once,
-- outside the walk, not for each entry the OFFSET passes (the cast in the
-- scan's target list cost a third of the walk). The key's text is the
-- cursor its callers store: the function pins every setting that text
-- depends on (DateStyle, IntervalStyle, extra_float_digits). A key of an
-- oid-alias type (pgjobs._oid_alias_type: regclass, ...) is its oid, not its
-- name: a rename between two pages gave the stored name to another object,
-- and the next page started after that one's key (rows skipped, the job
-- succeeded). Locks nothing.
DECLARE
    v_key text;
BEGIN
    EXECUTE format('SELECT (SELECT t.%2$I FROM %3$s t WHERE t.%1$I = ANY (ARRAY[%4$s])%5$s '
                   'ORDER BY t.%1$I, t.%2$I OFFSET %6$s LIMIT 1)%7$s::text',
                   p_scope_column, p_key_column, p_target, p_scope, p_bounds, p_offset,
                   CASE WHEN pgjobs._oid_alias_type(
                                 (SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = p_target AND a.attname = p_key_column))
                        THEN '::pg_catalog.oid' ELSE '' END)
       INTO v_key;
    RETURN v_key;
END
$$;
