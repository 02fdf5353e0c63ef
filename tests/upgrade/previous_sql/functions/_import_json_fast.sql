CREATE OR REPLACE FUNCTION pgjobs._import_json_fast(
    p_expr text,
    p_shape jsonb,
    p_depth integer DEFAULT 1)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The text of an SQL boolean expression over the jsonb expression p_expr
-- (cheap to name again: a subquery's column) that is true only where
-- pgjobs._import_json_check(p_expr, p_shape, ...) would return true, for
-- the common shapes: an array of one dimension (its elements checked
-- alike) or of two (rectangular, elements of a scalar type), a composite's
-- object (only the type's fields, each checked alike). Elsewhere (three
-- dimensions, two of composites, a value the check refuses) it is false or
-- NULL, and pgjobs._import_insert_sql calls the check, which decides and
-- names the place. Built once per statement, it costs a record no PL/pgSQL
-- call: the check's call took about 0.2 ms a value of a composite or a
-- two-dimensional array, a JSONL import of such a table 37x a plain COPY
-- of its CSV (bench/import.py --shape nested). p_depth names the aliases
-- of nested subqueries. Reads nothing; locks nothing.
DECLARE
    v_alias text := 'pgjobs_f' || p_depth;
    v_body text;
    v_field record;
BEGIN
    IF NOT coalesce(p_shape ?| ARRAY['array', 'fields'], false) THEN
        RETURN 'true';
    END IF;
    IF p_depth > 32 THEN
        RETURN 'false';  -- (the check decides)
    END IF;
    IF p_shape ? 'array' THEN
        IF coalesce((p_shape -> 'array') ?| ARRAY['array', 'fields'], false) THEN
            -- one dimension (the check reads the dimensions along the
            -- first elements), each element as its own shape says
            v_body := format(
                'pg_catalog.jsonb_typeof(%1$s) OPERATOR(pg_catalog.=) ''array'' AND '
                'pg_catalog.jsonb_typeof(%1$s OPERATOR(pg_catalog.->) 0) IS DISTINCT FROM ''array'' '
                'AND NOT EXISTS (SELECT FROM pg_catalog.jsonb_array_elements(%1$s) %2$I (v) '
                'WHERE NOT COALESCE(%3$s, false))',
                p_expr, v_alias,
                pgjobs._import_json_fast(format('%I.v', v_alias), p_shape -> 'array',
                                         p_depth + 1));
        ELSE
            -- one dimension, or two: every element an array as long as the
            -- first, none of their elements an array (jsonpath's strict mode;
            -- an error, silenced, is NULL: the check decides)
            v_body := format(
                'pg_catalog.jsonb_typeof(%1$s) OPERATOR(pg_catalog.=) ''array'' AND '
                '(pg_catalog.jsonb_typeof(%1$s OPERATOR(pg_catalog.->) 0) IS DISTINCT FROM ''array'' '
                'OR (pg_catalog.jsonb_typeof(%1$s OPERATOR(pg_catalog.->) 0 OPERATOR(pg_catalog.->) 0) '
                'IS DISTINCT FROM ''array'' AND NOT pg_catalog.jsonb_path_exists(%1$s, '
                '''strict $[*] ? (@.type() != "array" || @.size() != $n)'', '
                'pg_catalog.jsonb_build_object(''n'', pg_catalog.jsonb_array_length('
                '%1$s OPERATOR(pg_catalog.->) 0)), true) AND NOT pg_catalog.jsonb_path_exists('
                '%1$s, ''strict $[*][*] ? (@.type() == "array")'', ''{}'', true)))',
                p_expr);
        END IF;
    ELSE
        v_body := format(
            'pg_catalog.jsonb_typeof(%1$s) OPERATOR(pg_catalog.=) ''object'' AND NOT EXISTS '
            '(SELECT FROM pg_catalog.jsonb_object_keys(%1$s) %2$I (k) '
            'WHERE %2$I.k OPERATOR(pg_catalog.<>) ALL (%3$L::pg_catalog.text[]))',
            p_expr, v_alias,
            ARRAY(SELECT n FROM jsonb_array_elements_text(p_shape -> 'names') n)::text);
        FOR v_field IN
            SELECT f.key, f.value FROM jsonb_each(p_shape -> 'fields') f
             WHERE f.value ?| ARRAY['array', 'fields']
             ORDER BY f.key
        LOOP
            v_body := v_body || ' AND ' || pgjobs._import_json_fast(
                format('(%s OPERATOR(pg_catalog.->) %L)', p_expr, v_field.key), v_field.value,
                p_depth + 1);
        END LOOP;
    END IF;
    RETURN format('(%1$s IS NULL OR pg_catalog.jsonb_typeof(%1$s) IN (''null'', ''string'') '
                  'OR (%2$s))', p_expr, v_body);
END
$$;

COMMENT ON FUNCTION pgjobs._import_json_fast(text, jsonb, integer) IS
'SQL text of a test, true only where pgjobs._import_json_check would pass a JSONL value of shape '
'p_shape (one- or two-dimensional arrays, composites); else the check is called.';
