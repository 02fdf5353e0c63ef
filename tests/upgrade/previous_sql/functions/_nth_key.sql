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
AS $$
-- The key, as text, of the scope's row p_offset rows into the keyset walk
-- that p_bounds restricts (' AND ...' conditions on the key, written by the
-- caller with its values quoted; '' for none), in key order; NULL when the
-- walk has no such row. p_scope is the scope's typed literal
-- (pgjobs._scope_literal).
--
-- The one way pages, export chunks, parallel parts, previews and the field
-- check find where a stretch of keys ends: an index-only walk of p_offset + 1
-- entries of the (scope, key) btree. ORDER BY names both columns (qualified:
-- equal to key order within one scope) so that the planner takes that btree,
-- not the key's own index across every scope; and the key is cast to text
-- once, outside the walk, not for each entry the OFFSET passes (the cast in
-- the scan's target list cost a third of the walk). The key's text is the
-- cursor its callers store: the function pins every setting that text
-- depends on (DateStyle, IntervalStyle, extra_float_digits). Locks nothing.
DECLARE
    v_key text;
BEGIN
    EXECUTE format('SELECT (SELECT t.%2$I FROM %3$s t WHERE t.%1$I = %4$s%5$s '
                   'ORDER BY t.%1$I, t.%2$I OFFSET %6$s LIMIT 1)::text',
                   p_scope_column, p_key_column, p_target, p_scope, p_bounds, p_offset)
       INTO v_key;
    RETURN v_key;
END
$$;
