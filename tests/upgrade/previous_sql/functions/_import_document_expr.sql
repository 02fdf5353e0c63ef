-- The signature before p_drop_empty: gone in the transaction that creates
-- this one (pgjobs migrate applies every function file in one), as two
-- signatures with defaults made a call of two arguments ambiguous; the
-- previous release's callers pass two, which this one takes alike.
DROP FUNCTION IF EXISTS pgjobs._import_document_expr(text[], text[], integer);

CREATE OR REPLACE FUNCTION pgjobs._import_document_expr(p_paths text[], p_exprs text[],
                                                        p_depth integer DEFAULT 1,
                                                        p_drop_empty boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The SQL expression of the jsonb object an import builds from document
-- fields: p_paths are dotted paths (a.b.c), p_exprs their jsonb value
-- expressions, in the same order. Paths sharing a prefix nest into one
-- object ({"a": {"b": .., "c": ..}}); the caller has refused a path that
-- is both a value and a prefix of another. Built once per import as text
-- (pgjobs._jsonb_build_sql: jsonb_build_object calls, 50 pairs each,
-- joined by ||), so a row costs no PL/pgSQL call. p_drop_empty (a CSV
-- source, whose empty unquoted fields are NULL and left out): a nested
-- object whose fields are all left out is left out too (NULL, for the
-- caller's jsonb_strip_nulls), so that a record with "a.b" empty names no
-- "a" rather than {"a": {}}, which an update merged in as an object where
-- the row held a value. Locks nothing.
DECLARE
    v_heads text[] := '{}'::text[];
    v_head text;
    v_pairs text[] := '{}'::text[];
    v_sub_paths text[];
    v_sub_exprs text[];
    v_segs text[];
BEGIN
    FOR v_i IN 1 .. cardinality(p_paths) LOOP
        v_head := (string_to_array(p_paths[v_i], '.'))[p_depth];
        IF NOT v_head = ANY (v_heads) THEN
            v_heads := v_heads || v_head;
        END IF;
    END LOOP;
    FOREACH v_head IN ARRAY v_heads LOOP
        v_sub_paths := '{}'::text[];
        v_sub_exprs := '{}'::text[];
        FOR v_i IN 1 .. cardinality(p_paths) LOOP
            v_segs := string_to_array(p_paths[v_i], '.');
            IF v_segs[p_depth] = v_head THEN
                IF cardinality(v_segs) = p_depth THEN
                    v_pairs := v_pairs || format('%L, %s', v_head, p_exprs[v_i]);
                ELSE
                    v_sub_paths := v_sub_paths || p_paths[v_i];
                    v_sub_exprs := v_sub_exprs || p_exprs[v_i];
                END IF;
            END IF;
        END LOOP;
        IF cardinality(v_sub_paths) > 0 THEN
            v_pairs := v_pairs || format(
                CASE WHEN p_drop_empty
                     THEN '%L, NULLIF(pg_catalog.jsonb_strip_nulls(%s), ''{}''::jsonb)'
                     ELSE '%L, %s' END,
                v_head,
                pgjobs._import_document_expr(v_sub_paths, v_sub_exprs, p_depth + 1,
                                             p_drop_empty));
        END IF;
    END LOOP;
    RETURN pgjobs._jsonb_build_sql(v_pairs);
END
$$;
