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
    v_pairs text[] := '{}'::text[];
    v_group record;
BEGIN
    -- One pass, grouped by the head (each path's part at p_depth) in order
    -- of first appearance: a path's leaf pairs, then its nested fields in
    -- one call. Each head was sought among all heads and every path split
    -- again for each head: 25 million splits for a JSONL record of 5,000
    -- fields, about a minute (h151). Same text, same order.
    FOR v_group IN
        SELECT h.head,
               coalesce(array_agg(format('%L, %s', h.head, h.expr) ORDER BY h.i)
                            FILTER (WHERE h.leaf), '{}'::text[]) AS leaves,
               coalesce(array_agg(h.path ORDER BY h.i) FILTER (WHERE NOT h.leaf),
                        '{}'::text[]) AS sub_paths,
               coalesce(array_agg(h.expr ORDER BY h.i) FILTER (WHERE NOT h.leaf),
                        '{}'::text[]) AS sub_exprs
          FROM (SELECT u.i, u.path, u.expr, s.segs[p_depth] AS head,
                       cardinality(s.segs) = p_depth AS leaf
                  FROM unnest(p_paths, p_exprs) WITH ORDINALITY u (path, expr, i)
                 CROSS JOIN LATERAL (SELECT string_to_array(u.path, '.') AS segs) s) h
         WHERE h.head IS NOT NULL
         GROUP BY h.head
         ORDER BY min(h.i)
    LOOP
        v_pairs := v_pairs || v_group.leaves;
        IF cardinality(v_group.sub_paths) > 0 THEN
            v_pairs := v_pairs || format(
                CASE WHEN p_drop_empty
                     THEN '%L, NULLIF(pg_catalog.jsonb_strip_nulls(%s), ''{}''::jsonb)'
                     ELSE '%L, %s' END,
                v_group.head,
                pgjobs._import_document_expr(v_group.sub_paths, v_group.sub_exprs,
                                             p_depth + 1, p_drop_empty));
        END IF;
    END LOOP;
    RETURN pgjobs._jsonb_build_sql(v_pairs);
END
$$;
