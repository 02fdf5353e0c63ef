CREATE OR REPLACE FUNCTION pgjobs._jsonb_build_sql(p_pairs text[])
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The SQL expression of the jsonb object of p_pairs, each 'key literal,
-- value expression' (SQL text the caller wrote): jsonb_build_object calls
-- of at most 50 pairs, as the function takes at most 100 arguments, joined
-- by ||; NULL for no pairs. The one way the generated statements build an
-- object of many fields (an import's record document,
-- pgjobs._import_document_expr; the written-out merges,
-- pgjobs._jsonb_merge_sql_node and pgjobs._import_merge_sql).
DECLARE
    v_parts text[] := '{}'::text[];
BEGIN
    FOR v_i IN 1 .. coalesce(cardinality(p_pairs), 0) BY 50 LOOP
        v_parts := v_parts || format('pg_catalog.jsonb_build_object(%s)',
                                     array_to_string(p_pairs[v_i : v_i + 49], ', '));
    END LOOP;
    IF cardinality(v_parts) = 0 THEN
        RETURN NULL;
    END IF;
    RETURN '(' || array_to_string(v_parts, ' OPERATOR(pg_catalog.||) ') || ')';
END
$$;
