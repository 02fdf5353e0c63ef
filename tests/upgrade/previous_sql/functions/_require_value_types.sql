CREATE OR REPLACE FUNCTION pgjobs._require_value_types(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_filter jsonb,
    p_options jsonb)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The typo guard's twin for values (a delete's and a backfill's submit): a
-- comparison that matches every row whose value is of another JSON type
-- (pgjobs._risky_comparisons: {"amount": {"$ne": "3"}}, {"tags": {"$nin":
-- ["a"]}} on arrays) is refused with 22023 when rows of scope p_scope
-- (canonical) hold the path but none holds a value of the operand's type
-- there: written "3" for 3, the filter would take every row that has the
-- field, as a misspelt field takes every row. Reads at most
-- pgjobs.field_check_rows rows (as the typo guard; default 1,000,000) per
-- path and type, and stops at the first row of the type. A path no row
-- has is the typo guard's (pgjobs._judge_fields: refused, or deferred on
-- an empty scope); {"allow_unknown_fields": true} lets both through.
-- Locks nothing.
DECLARE
    v_setting text := current_setting('pgjobs.field_check_rows', true);
    v_limit bigint := 1000000;
    v_columns jsonb;
    v_check record;
    v_ref text;
    v_seg text;
    v_rows text;
    v_has_path boolean;
    v_has_type boolean;
    v_article text;
    v_held text[];
BEGIN
    IF p_reg.document_column IS NULL
       OR coalesce(pgjobs._option_bool('allow_unknown_fields',
                                       p_options -> 'allow_unknown_fields'), false) THEN
        RETURN;
    END IF;
    IF v_setting ~ '^\s*\d{1,10}\s*$' THEN
        v_limit := least(greatest(v_setting::bigint, 1000), 1000000);
    END IF;
    SELECT coalesce(jsonb_object_agg(a.attname, true), '{}') INTO v_columns
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attnum > 0 AND NOT a.attisdropped;
    FOR v_check IN
        SELECT r.path, array_agg(DISTINCT r.json_type ORDER BY r.json_type) AS types
          FROM pgjobs._risky_comparisons(p_filter, v_columns) r
         GROUP BY r.path ORDER BY r.path
    LOOP
        v_ref := 's.d';
        FOREACH v_seg IN ARRAY string_to_array(v_check.path, '.') LOOP
            v_ref := v_ref || format(' OPERATOR(pg_catalog.->) %L::pg_catalog.text', v_seg);
        END LOOP;
        v_rows := format('(SELECT t.%I AS d FROM %s t WHERE t.%I OPERATOR(pg_catalog.=) %s '
                         'LIMIT %s) s', p_reg.document_column, p_reg.target, p_reg.scope_column,
                         pgjobs._scope_literal(p_reg, p_scope), v_limit);
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE (%s) IS NOT NULL)', v_rows, v_ref)
           INTO v_has_path;
        CONTINUE WHEN NOT v_has_path;
        FOR i IN 1 .. cardinality(v_check.types) LOOP
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE pg_catalog.jsonb_typeof(%s) '
                           'OPERATOR(pg_catalog.=) %L::pg_catalog.text)',
                           v_rows, v_ref, v_check.types[i])
               INTO v_has_type;
            IF NOT v_has_type THEN
                v_article := CASE WHEN v_check.types[i] IN ('object', 'array') THEN 'an'
                                  ELSE 'a' END;
                EXECUTE format('SELECT array_agg(DISTINCT pg_catalog.jsonb_typeof(%1$s) '
                               'ORDER BY pg_catalog.jsonb_typeof(%1$s)) FROM %2$s '
                               'WHERE (%1$s) IS NOT NULL', v_ref, v_rows)
                   INTO v_held;
                -- "an object", "an array": the article goes with the type.
                RAISE EXCEPTION 'filter compares document field "%" with % % value, and no row '
                                'of scope % holds % % there (they hold: %)', v_check.path,
                                v_article, v_check.types[i], p_scope, v_article,
                                v_check.types[i], array_to_string(v_held, ', ')
                    USING ERRCODE = '22023',
                    HINT = format('As written ($ne, $nin, or under $not) the comparison excludes '
                                  'no row that has the field, so the job would take all of '
                                  'them. Write the value as the field holds it (3, not "3"; an '
                                  'array for an array), or pass {"allow_unknown_fields": true} '
                                  'if rows of type %s are meant.', v_check.types[i]);
            END IF;
        END LOOP;
    END LOOP;
END
$$;
