CREATE OR REPLACE FUNCTION pgjobs._compile_filter_column_op(
    p_ref   text,
    p_type  text,
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
-- One operator on a column: p_ref is the SQL for the column (or a typed NULL
-- when the caller test-evaluates), p_type its type as format_type() spells it.
-- Values become canonical typed literals (pgjobs._typed_literal) (a JSON string gives its text, other
-- scalars their JSON text; json/jsonb columns take the JSON text itself).
-- Every operator is written OPERATOR(pg_catalog.x): the text is also read
-- outside pgjobs' pinned path (pgjobs.mask in a client's query), where an
-- unqualified operator would take one a writable schema holds for the
-- column's domain (pg_catalog has none of a domain's own, so any such
-- operator is a better match) or, with that schema first, for any type.
-- A qualified name still resolves a domain to its base type's operator.
-- Returns a parenthesised boolean expression; NULL means "not matched".
-- The operand's shape is checked before (pgjobs._check_filter_operand);
-- what is left here is what a value must be for the column's type.
DECLARE
    v_is_json boolean := p_type = 'jsonb';
    v_elem    jsonb;
    v_lits    text[] := '{}'::text[];
    v_has_null boolean := false;
    v_sql     text;
    v_elem_type text;
BEGIN
    -- An array column (one level: the base type's array for an array of a
    -- domain, pgjobs._loose_type): its own meanings of the comparisons
    -- (pgjobs._compile_filter_array_op); $contains (the array's text, below)
    -- and $exists are any column's.
    IF right(p_type, 2) = '[]' AND p_op NOT IN ('$exists', '$contains') THEN
        SELECT format_type(t.typelem, -1) INTO v_elem_type
          FROM pg_catalog.pg_type t
         WHERE t.oid = p_type::regtype AND t.typcategory = 'A' AND t.typelem <> 0
           AND t.typlen = -1;
        IF v_elem_type IS NOT NULL THEN
            RETURN pgjobs._compile_filter_array_op(p_ref, p_type, v_elem_type, p_field, p_op,
                                                   p_value);
        END IF;
    END IF;
    IF p_op IN ('$eq', '$ne') THEN
        IF jsonb_typeof(p_value) = 'null' THEN
            v_sql := format('(%s IS %sNULL)', p_ref, CASE p_op WHEN '$ne' THEN 'NOT ' ELSE '' END);
        ELSE
            IF jsonb_typeof(p_value) IN ('object', 'array') AND NOT v_is_json THEN
                RAISE EXCEPTION 'operator "%" at "%" needs a scalar value for a column of type %, '
                                'got %', p_op, p_field, p_type, left(p_value::text, 200)
                    USING ERRCODE = '22023',
                  HINT = 'Compare a column with one value, e.g. {"id": 5}; use $in for several.';
            END IF;
            -- $ne also matches NULL columns, as IS DISTINCT FROM would; written
            -- out because IS DISTINCT FROM looks its `=` up on the reader's path.
            v_sql := format(CASE p_op WHEN '$ne'
                                 THEN '(%1$s IS NULL OR NOT %1$s OPERATOR(pg_catalog.=) %2$s)'
                                 ELSE '(%1$s OPERATOR(pg_catalog.=) %2$s)' END, p_ref,
                            pgjobs._typed_literal(CASE WHEN v_is_json THEN p_value::text
                                                       ELSE p_value #>> '{}' END, p_type));
        END IF;

    ELSIF p_op IN ('$gt', '$gte', '$lt', '$lte') THEN
        v_sql := format('(%s OPERATOR(pg_catalog.%s) %s)', p_ref,
                        CASE p_op WHEN '$gt' THEN '>' WHEN '$gte' THEN '>='
                                  WHEN '$lt' THEN '<' ELSE '<=' END,
                        pgjobs._typed_literal(CASE WHEN v_is_json THEN p_value::text
                                                   ELSE p_value #>> '{}' END, p_type));

    ELSIF p_op IN ('$in', '$nin') THEN
        FOR v_elem IN SELECT x.value FROM jsonb_array_elements(p_value) x LOOP
            IF jsonb_typeof(v_elem) = 'null' THEN
                v_has_null := true;
            ELSIF jsonb_typeof(v_elem) IN ('object', 'array') AND NOT v_is_json THEN
                RAISE EXCEPTION 'operator "%" at "%" needs scalar values for a column of type %, '
                                'got %', p_op, p_field, p_type, left(v_elem::text, 200)
                    USING ERRCODE = '22023',
                  HINT = 'List one value per element, e.g. {"id": {"$in": [1, 2, 3]}}.';
            ELSE
                v_lits := v_lits || pgjobs._typed_literal(
                    CASE WHEN v_is_json THEN v_elem::text ELSE v_elem #>> '{}' END, p_type);
            END IF;
        END LOOP;
        v_sql := CASE
                     WHEN cardinality(v_lits) = 0 AND v_has_null THEN format('%s IS NULL', p_ref)
                     WHEN cardinality(v_lits) = 0 THEN 'false'
                     WHEN v_has_null THEN format('%s OPERATOR(pg_catalog.=) ANY (ARRAY[%s]) OR %s IS NULL', p_ref,
                                                 array_to_string(v_lits, ', '), p_ref)
                     ELSE format('%s OPERATOR(pg_catalog.=) ANY (ARRAY[%s])', p_ref, array_to_string(v_lits, ', '))
                 END;
        v_sql := CASE p_op WHEN '$in' THEN '(' || v_sql || ')'
                           ELSE '(NOT coalesce((' || v_sql || '), false))' END;

    ELSIF p_op = '$contains' THEN
        -- An ILIKE over col::text: only where that text is the same in
        -- every session that evaluates the clause (the runner's pages, the
        -- reads, a client's query around pgjobs.mask): pgjobs._text_is_fixed.
        IF NOT pgjobs._text_is_fixed(p_type::regtype) THEN
            RAISE EXCEPTION 'operator "$contains" at "%": a column of type % prints differently '
                            'in different sessions', p_field, p_type
                USING ERRCODE = '22023',
                HINT = 'Its text depends on session settings (TimeZone, DateStyle, '
                       'IntervalStyle, extra_float_digits, bytea_output...), so the job, its '
                       'preview and the reads would each match other rows. Compare values '
                       'instead, e.g. {' || to_json(p_field)::text || ': {"$gte": "2024-01-01", '
                       '"$lt": "2024-02-01"}}, or use $contains on a text column or a document '
                       'field.';
        END IF;
        -- Under the database's default collation, not the column's: ILIKE
        -- refuses a nondeterministic collation (a case-insensitive ICU
        -- column) on the first row it reads, never on the typed NULL the
        -- compiler test-evaluates, so such a clause passed every submit
        -- and then failed the job's pages and, while the job was pending,
        -- every read of its scope (pgjobs.visible, visible_count, a
        -- client's query around pgjobs.mask) with 0A000. The default
        -- collation is deterministic, and the same in every session.
        v_sql := format('((%s)::pg_catalog.text COLLATE pg_catalog."default" '
                        'OPERATOR(pg_catalog.~~*) %L::pg_catalog.text)', p_ref,
                        '%' || replace(replace(replace(p_value #>> '{}', '\', '\\'),
                                               '%', '\%'), '_', '\_') || '%');

    ELSIF p_op = '$exists' THEN
        v_sql := format('(%s IS %sNULL)', p_ref,
                        CASE WHEN (p_value #>> '{}')::boolean THEN 'NOT ' ELSE '' END);

    ELSE
        RAISE EXCEPTION 'unknown operator "%" at "%"', p_op, p_field USING ERRCODE = '22023',
                  HINT = 'Valid field operators: $eq $ne $gt $gte $lt $lte $in $nin $contains $exists $not.';
    END IF;
    RETURN v_sql;
END
$function$;
