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
-- comparison that matches every row whose value is not like the operand
-- (pgjobs._risky_operands: {"amount": {"$ne": "3"}}, {"tags": {"$nin":
-- ["a"]}} on arrays) is refused with 22023 when rows of scope p_scope
-- (canonical) hold the path but none holds a value of the operand's type
-- there: written "3" for 3, the filter would take every row that has the
-- field, as a misspelt field takes every row. An object or array operand
-- is judged inside as well (pgjobs._operand_positions): each of its fields
-- and elements must be one some row holds there, with that type
-- ({"nest": {"$ne": {"a": "1"}}} on numbers, {"$not": {"nest": {"A": 1}}}
-- misspelt, ["1"] for arrays of numbers equal no row, so negated they took
-- them all). A key naming a json or jsonb column is judged the same way for
-- its equalities ($eq, $ne, $in, $nin: the column's value is the operand's
-- whole; its ranges and $contains compare as the column's type does).
-- Reads at most pgjobs.field_check_rows rows (as the typo guard; default
-- 1,000,000) per path and type or position, and stops at the first row
-- that has it. A path no row has is the typo guard's
-- (pgjobs._judge_fields: refused, or deferred on an empty scope);
-- {"allow_unknown_fields": true} lets both through. Locks nothing.
DECLARE
    v_setting text := current_setting('pgjobs.field_check_rows', true);
    v_limit bigint := 1000000;
    v_columns jsonb;
    v_check record;
    v_pos record;
    v_ref text;
    v_seg text;
    v_rows text;
    v_base text;
    v_what text;
    v_which text;
    v_has_path boolean;
    v_has_type boolean;
    v_article text;
    v_held text[];
BEGIN
    -- (A target without a document column: its json columns are judged.)
    IF coalesce(pgjobs._option_bool('allow_unknown_fields',
                                       p_options -> 'allow_unknown_fields'), false) THEN
        RETURN;
    END IF;
    IF v_setting ~ '^\s*\d{1,10}\s*$' THEN
        v_limit := least(greatest(v_setting::bigint, 1000), 1000000);
    END IF;
    -- The target's columns: 'json' for a json or jsonb one (a domain's base).
    SELECT coalesce(jsonb_object_agg(a.attname,
               CASE WHEN pgjobs._base_type(a.atttypid) IN ('json'::regtype, 'jsonb'::regtype)
                    THEN to_jsonb('json'::text) ELSE to_jsonb(true) END), '{}')
      INTO v_columns
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attnum > 0 AND NOT a.attisdropped;
    FOR v_check IN
        SELECT r.path, array_agg(DISTINCT jsonb_typeof(r.operand)
                                 ORDER BY jsonb_typeof(r.operand)) AS types
          FROM pgjobs._risky_operands(p_filter, v_columns) r
         WHERE NOT v_columns ? r.path OR r.op IN ('$eq', '$ne', '$in', '$nin')
         GROUP BY r.path ORDER BY r.path
    LOOP
        v_ref := 's.d';
        IF v_columns ? v_check.path THEN
            v_what := format('column "%s"', pgjobs._clipped(v_check.path));
            -- As the filter reads it: a json column through
            -- pgjobs._json_as_jsonb (a value jsonb refuses is a string).
            v_rows := format('(SELECT %s AS d FROM %s t WHERE t.%I '
                             'OPERATOR(pg_catalog.=) %s LIMIT %s) s',
                             CASE WHEN (SELECT pgjobs._base_type(a.atttypid)
                                          FROM pg_catalog.pg_attribute a
                                         WHERE a.attrelid = p_reg.target
                                           AND a.attname = v_check.path)
                                       = 'json'::regtype
                                  THEN format('pgjobs._json_as_jsonb((t.%I)::pg_catalog.json)',
                                              v_check.path)
                                  ELSE format('(t.%I)::pg_catalog.jsonb', v_check.path) END,
                             p_reg.target, p_reg.scope_column,
                             pgjobs._scope_literal(p_reg, p_scope), v_limit);
        ELSE
            FOREACH v_seg IN ARRAY string_to_array(v_check.path, '.') LOOP
                v_ref := v_ref || format(' OPERATOR(pg_catalog.->) %L::pg_catalog.text', v_seg);
            END LOOP;
            v_what := format('document field "%s"', pgjobs._clipped(v_check.path));
            v_rows := format('(SELECT t.%I AS d FROM %s t WHERE t.%I OPERATOR(pg_catalog.=) %s '
                             'LIMIT %s) s', p_reg.document_column, p_reg.target,
                             p_reg.scope_column, pgjobs._scope_literal(p_reg, p_scope), v_limit);
        END IF;
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
                -- The rows read were the scope's first v_limit (a larger scope):
                -- said so, as the typo guard says it, not "no row".
                EXECUTE format('SELECT CASE WHEN count(*) >= %s THEN %L ELSE ''no row'' END '
                               'FROM %s', v_limit, format('none of the first %s rows', v_limit),
                               v_rows)
                   INTO v_which;
                RAISE EXCEPTION 'filter compares % with % % value, and % '
                                'of scope % holds % % there (they hold: %)', v_what,
                                v_article, v_check.types[i], v_which, pgjobs._clipped(p_scope),
                                v_article, v_check.types[i], array_to_string(v_held, ', ')
                    USING ERRCODE = '22023',
                    HINT = format('As written ($ne, $nin, or under $not) the comparison excludes '
                                  'no row that has the field, so the job would take all of '
                                  'them. Write the value as the field holds it (3, not "3"; an '
                                  'array for an array), or pass {"allow_unknown_fields": true} '
                                  'if rows of type %s are meant.', v_check.types[i]);
            END IF;
        END LOOP;
        -- Inside an object or array operand: every field and element, with
        -- its type, at a position some row holds. The strict SQL/JSON path
        -- is passed as a value ($1): the keys never reach SQL text.
        v_base := 'strict $';
        IF NOT v_columns ? v_check.path THEN
            FOREACH v_seg IN ARRAY string_to_array(v_check.path, '.') LOOP
                v_base := v_base || '.' || to_json(v_seg)::text;
            END LOOP;
        END IF;
        FOR v_pos IN
            SELECT DISTINCT ON (p.steps, p.json_type) r.operand, p.steps, p.shown, p.json_type
              FROM pgjobs._risky_operands(p_filter, v_columns) r,
                   pgjobs._operand_positions(r.operand) p
             WHERE r.path = v_check.path
               AND (NOT v_columns ? r.path OR r.op IN ('$eq', '$ne', '$in', '$nin'))
             ORDER BY p.steps, p.json_type, r.operand
        LOOP
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE pg_catalog.jsonb_path_exists('
                           's.d, $1, ''{}''::pg_catalog.jsonb, true))', v_rows)
               INTO v_has_type
              USING (v_base || v_pos.steps || format(' ? (@.type() == %s)',
                                                     to_json(v_pos.json_type)::text))::jsonpath;
            IF NOT v_has_type THEN
                EXECUTE format('SELECT array_agg(DISTINCT q.t ORDER BY q.t) FROM %s, '
                               'LATERAL (SELECT x OPERATOR(pg_catalog.#>>) ''{}''::text[] AS t '
                               'FROM pg_catalog.jsonb_path_query(s.d, $1, '
                               '''{}''::pg_catalog.jsonb, true) x) q', v_rows)
                   INTO v_held
                  USING (v_base || v_pos.steps || '.type()')::jsonpath;
                v_article := CASE WHEN v_pos.json_type IN ('object', 'array') THEN 'an'
                                  ELSE 'a' END;
                -- The rows read were the scope's first v_limit (a larger scope):
                -- said so, as the typo guard says it, not "no row".
                EXECUTE format('SELECT CASE WHEN count(*) >= %s THEN %L ELSE ''no row'' END '
                               'FROM %s', v_limit, format('none of the first %s rows', v_limit),
                               v_rows)
                   INTO v_which;
                RAISE EXCEPTION 'filter compares % with %, and % of scope % holds % % at '
                                '% (%)', v_what, pgjobs._clipped(v_pos.operand::text), v_which,
                                pgjobs._clipped(p_scope),
                                v_article, v_pos.json_type,
                                regexp_replace(pgjobs._clipped(v_check.path || v_pos.shown),
                                               '[[:cntrl:]]', '?', 'g'),
                                CASE WHEN v_held IS NULL THEN 'no row has it there'
                                     ELSE 'they hold: ' || array_to_string(v_held, ', ') END
                    USING ERRCODE = '22023',
                    HINT = 'A value compared whole equals only one with the same fields and '
                           'elements of the same types, so as written ($ne, $nin, or under '
                           '$not) the comparison excludes no row that has the field, and the '
                           'job would take all of them. Write the value as the rows hold it '
                           '(field names and their case included; 3, not "3"), or pass '
                           '{"allow_unknown_fields": true} if such values are meant.';
            END IF;
        END LOOP;
    END LOOP;
END
$$;
