CREATE OR REPLACE FUNCTION pgjobs._compile_filter_array_op(
    p_ref   text,
    p_type  text,
    p_elem  text,
    p_field text,
    p_op    text,
    p_value jsonb)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $function$
-- One operator on an array column (pgjobs._compile_filter_column_op hands
-- it over): p_ref the SQL for the column, p_type its array type and p_elem
-- its element type, as format_type() spells them (an array of a domain
-- comes as the array of the domain's base type). What each operator means
-- (docs/filters.md, "Column types"), as MongoDB reads a list:
-- * a JSON array value is the whole array: {"tags": ["a", "b"]} and $eq
--   are array equality (order and repeats count), $in of arrays is "equal
--   to one of them";
-- * a scalar value is an element: {"tags": "a"} and $eq hold when the
--   array holds the element ('a' = ANY (tags)), $in of scalars when it
--   holds one of them (tags && ARRAY[...]); a string written as an array
--   literal ("{a,b}", "[0:1]={a,b}") is the whole array, as it was before
--   (as an element, a filter written then would change meaning);
-- * $ne / $nin / $not are the negations (a NULL column is not equal);
-- * $contains, $exists, null: as on any column, compiled by
--   pgjobs._compile_filter_column_op ($contains reads the array's text,
--   '{a,"b c"}', where it is the same in every session);
-- * $gt $gte $lt $lte: refused (22023): an array's order (element by
--   element) is no order a filter means.
-- Before the SQL is returned, an equality is evaluated once on the literal
-- itself: an element type without one (point[]) fails there, at submit,
-- not at the job's first page, where only a non-NULL row reaches it.
-- Returns a parenthesised boolean expression; NULL means "not matched".
-- Locks nothing.
DECLARE
    v_elem    jsonb;
    v_scalars text[] := '{}'::text[];
    v_arrays  text[] := '{}'::text[];
    v_has_null boolean := false;
    v_parts   text[] := '{}'::text[];
    v_text    text;
    v_lit     text;
    v_sql     text;
    v_hint constant text :=
        'On an array column, a value that is an array compares the whole array '
        '({"tags": ["a", "b"]}, {"tags": {"$in": [["a"], ["a", "b"]]}}); a single value is an '
        'element the array holds ({"tags": "a"}, {"tags": {"$in": ["a", "b"]}} for any of them); '
        '$contains finds a substring of the array''s text; {"tags": null} and $exists test the '
        'column itself. See docs/filters.md, "Column types".';
BEGIN
    IF p_op IN ('$gt', '$gte', '$lt', '$lte') THEN
        RAISE EXCEPTION 'operator "%" at "%" does not apply to a column of type % (an array): '
                        'arrays have no order a filter can mean', p_op, p_field, p_type
            USING ERRCODE = '22023', HINT = v_hint;
    END IF;

    -- $eq $ne $in $nin: sort the values into elements and whole arrays.
    FOR v_elem IN
        SELECT x.value FROM jsonb_array_elements(
            CASE WHEN p_op IN ('$in', '$nin') THEN p_value ELSE jsonb_build_array(p_value) END) x
    LOOP
        IF jsonb_typeof(v_elem) = 'null' THEN
            v_has_null := true;
        ELSIF jsonb_typeof(v_elem) = 'object'
              OR (jsonb_typeof(v_elem) = 'array'
                  AND jsonb_path_exists(v_elem, 'strict $[*] ? (@.type() == "array" || '
                                                '@.type() == "object")')) THEN
            RAISE EXCEPTION 'operator "%" at "%" (a column of type %) takes elements and '
                            'one-level arrays of them, got %', p_op, p_field, p_type,
                            left(v_elem::text, 200)
                USING ERRCODE = '22023', HINT = v_hint;
        ELSIF jsonb_typeof(v_elem) = 'array' THEN
            -- The array's text as PostgreSQL writes a text[] (quoting each
            -- element), then cast to the column's array type and written
            -- canonically, as any other value (pgjobs._typed_literal).
            SELECT ARRAY(SELECT x.value #>> '{}'
                           FROM jsonb_array_elements(v_elem) WITH ORDINALITY x(value, n)
                          ORDER BY x.n)::text
              INTO v_text;
            v_arrays := v_arrays || pgjobs._typed_literal(v_text, p_type);
        ELSIF jsonb_typeof(v_elem) = 'string'
              AND (v_elem #>> '{}') ~ '^\s*((\[[-+0-9: ]*\])+\s*=\s*)?\{.*\}\s*$' THEN
            -- An array literal written as a string ("{a,b}") is the whole
            -- array, as it was before arrays had their own meanings: read as
            -- one element, a filter written then would change meaning (its
            -- $ne / $nin taking nearly the whole scope).
            v_arrays := v_arrays || pgjobs._typed_literal(v_elem #>> '{}', p_type);
        ELSE
            v_scalars := v_scalars || pgjobs._typed_literal(v_elem #>> '{}', p_elem);
        END IF;
    END LOOP;

    IF p_op IN ('$eq', '$ne') AND v_has_null THEN
        RETURN format('(%s IS %sNULL)', p_ref, CASE p_op WHEN '$ne' THEN 'NOT ' ELSE '' END);
    END IF;

    -- The element type's equality, evaluated now on non-NULL values: array
    -- equality looks it up only then.
    BEGIN
        IF cardinality(v_arrays) > 0 THEN
            EXECUTE format('SELECT %1$s OPERATOR(pg_catalog.=) %1$s', v_arrays[1]);
        END IF;
        IF cardinality(v_scalars) > 0 THEN
            EXECUTE format('SELECT %1$s OPERATOR(pg_catalog.=) ANY (ARRAY[%1$s])', v_scalars[1]);
        END IF;
    EXCEPTION WHEN undefined_function OR undefined_object OR feature_not_supported THEN
        RAISE EXCEPTION 'operator "%" at "%": the elements of a column of type % have no '
                        'equality to compare', p_op, p_field, p_type
            USING ERRCODE = '22023',
                  HINT = 'Only the column''s presence can be tested: {"' || p_field
                         || '": null} or {"' || p_field || '": {"$exists": true}}.';
    END;

    IF cardinality(v_scalars) > 0 THEN
        v_parts := v_parts || CASE WHEN cardinality(v_scalars) = 1
            THEN format('%s OPERATOR(pg_catalog.=) ANY (%s)', v_scalars[1], p_ref)
            ELSE format('%s OPERATOR(pg_catalog.&&) ARRAY[%s]', p_ref,
                        array_to_string(v_scalars, ', ')) END;
    END IF;
    FOREACH v_lit IN ARRAY v_arrays LOOP
        v_parts := v_parts || format('%s OPERATOR(pg_catalog.=) %s', p_ref, v_lit);
    END LOOP;
    IF v_has_null THEN
        v_parts := v_parts || format('%s IS NULL', p_ref);
    END IF;
    v_sql := CASE cardinality(v_parts) WHEN 0 THEN 'false'
                 ELSE array_to_string(v_parts, ' OR ') END;
    RETURN CASE WHEN p_op IN ('$eq', '$in') THEN '(' || v_sql || ')'
                ELSE '(NOT coalesce((' || v_sql || '), false))' END;
END
$function$;
