-- The signature of releases before the scope was passed down: gone in
-- the transaction that creates this one (pgjobs migrate applies every
-- function file in one). A migration dropping it left the previous
-- release's functions, which serve every read and submit until that
-- transaction commits, calling a function that no longer existed (42883).
DROP FUNCTION IF EXISTS pgjobs._compile_filter(regclass, jsonb, pgjobs.target_registry);

CREATE OR REPLACE FUNCTION pgjobs._compile_filter(
    p_target regclass,
    p_filter jsonb,
    p_reg pgjobs.target_registry DEFAULT NULL,
    p_scope text DEFAULT NULL,
    OUT p_sql text,
    OUT p_paths text[])
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $function$
-- The filter compiler behind pgjobs.compile_filter (see its contract there):
-- p_sql is the boolean SQL expression, p_paths every document path (dotted,
-- as written, each once, in the order met) that the filter resolves at any
-- depth: keys naming a column are columns, never paths. One compile gives
-- both, so the unknown-field check (pgjobs._unknown_fields) sees exactly
-- the paths the predicate reads. p_reg: the target's registration when
-- the caller has just looked it up and checked it (pgjobs._target, as a
-- submit does once for all its steps); otherwise it is looked up here.
-- p_scope: the scope (canonical text) when the filter selects rows of one
-- scope (a job's row set, a preview: pgjobs._row_selection). A condition on
-- the scope column is then decided by the scope alone, and is refused
-- unless it restates it (pgjobs._compile_filter_field); without a scope
-- (pgjobs.compile_filter, over the whole table) it compares as any column.
-- Locks nothing.
DECLARE
    v_reg     pgjobs.target_registry;
    v_columns jsonb;
    v_values  bigint;
    v_contains bigint;
    v_contains_bytes bigint;
    v_scope_literal text;
    v_empty_field text;
    v_empty_op text;
BEGIN
    IF p_reg.target IS NOT NULL AND p_reg.target = p_target THEN
        v_reg := p_reg;  -- looked up and checked by the caller (pgjobs._target)
    ELSE
        v_reg := pgjobs._target_recent(p_target, false);  -- a read's verdict, if any
    END IF;

    IF p_filter IS NULL OR jsonb_typeof(p_filter) <> 'object' THEN
        RAISE EXCEPTION 'a filter must be a JSON object, got %', coalesce(p_filter::text, 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'Use {} to match every row, e.g. {"status": "done", "age": {"$gt": 30}}.';
    END IF;
    IF octet_length(p_filter::text) > 65536 THEN
        RAISE EXCEPTION 'filter is too large: % bytes (the limit is 65536)',
                        octet_length(p_filter::text)
            USING ERRCODE = '22023',
                  HINT = 'Split the work into several jobs, or select the rows by a column '
                         'instead of listing many values.';
    END IF;
    -- Every $in / $nin list at any depth (a "$in" key inside a value counts
    -- too: the cap errs on the safe side).
    SELECT coalesce(sum(jsonb_array_length(l)), 0) INTO v_values
      FROM jsonb_path_query(p_filter,
               'strict $.** ? (@.type() == "object").* ? (@.type() == "object")') o,
           LATERAL (SELECT o -> '$in' UNION ALL SELECT o -> '$nin') v(l)
     WHERE jsonb_typeof(l) = 'array';
    IF v_values > 10000 THEN
        RAISE EXCEPTION 'filter lists % values in $in / $nin (the limit is 10000 in all)',
                        v_values
            USING ERRCODE = '22023',
                  HINT = 'Split the work into several jobs, or select the rows by a column '
                         'instead of listing many values.';
    END IF;
    -- Every $contains at any depth, and its operands' bytes: each is an ILIKE
    -- over the row's text, whose cost grows with the text and the pattern, and
    -- unlike $in it cannot be hashed.
    SELECT count(*), coalesce(sum(octet_length(c #>> '{}')), 0)
      INTO v_contains, v_contains_bytes
      FROM jsonb_path_query(p_filter,
               'strict $.** ? (@.type() == "object").* ? (@.type() == "object")') o,
           LATERAL (SELECT o -> '$contains') v(c)
     WHERE c IS NOT NULL;
    IF v_contains > 32 OR v_contains_bytes > 256 THEN
        RAISE EXCEPTION 'filter has % $contains operators of % bytes in all '
                        '(the limits are 32 operators and 256 bytes)',
                        v_contains, v_contains_bytes
            USING ERRCODE = '22023',
                  HINT = 'Use fewer, shorter substrings, or select the rows by an equality '
                         '($eq / $in) on a column or field instead.';
    END IF;

    -- Column name -> its type without its modifiers, as format_type()
    -- spells it (safe to inline; typmod -1: 'bpchar', 'numeric', '"bit"';
    -- never the bare name 'character', which is char(1)); a domain is named
    -- as such, and pgjobs._compile_filter_field casts values to its base
    -- type (pgjobs._loose_type). So a value compares as it would in plain
    -- SQL (amount > '1.005'): cast to numeric(6,2) it would round to 1.01,
    -- cast to char(8) 'acme0001x' would truncate to 'acme0001', and the
    -- filter would cover other rows.
    SELECT coalesce(jsonb_object_agg(a.attname, format_type(a.atttypid, -1)), '{}')
      INTO v_columns
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped;

    IF p_scope IS NOT NULL THEN
        v_scope_literal := pgjobs._scope_literal(v_reg, p_scope);
    END IF;

    SELECT n.p_sql, n.p_paths INTO p_sql, p_paths
      FROM pgjobs._compile_filter_node(p_filter, v_columns, v_reg.document_column,
                                       CASE WHEN p_scope IS NOT NULL THEN v_reg.scope_column END,
                                       v_scope_literal, 1, 0, '{}'::text[]) n;

    -- An operand that came out empty and then holds for every row ($nin: [],
    -- $contains: "", a negated $in: [], a branch {} of an $or, a field's
    -- negated {}) is refused
    -- as an empty $and is (pgjobs._empty_operands): built from a selection
    -- that came out empty, it made a delete of the whole scope. Walked only
    -- when the filter's text holds an empty list, string or object at all
    -- (jsonb prints them so): the walk costs a tenth of a large filter's
    -- compile.
    IF strpos(p_filter::text, ': []') > 0 OR strpos(p_filter::text, ': ""') > 0
       OR strpos(p_filter::text, '{}') > 0 THEN
        SELECT e.field, e.op INTO v_empty_field, v_empty_op
          FROM pgjobs._empty_operands(p_filter) e LIMIT 1;
    END IF;
    IF v_empty_op IS NOT NULL THEN
        RAISE EXCEPTION '%', CASE v_empty_op
                WHEN '$or' THEN 'operator "$or" has an empty filter object {} among its '
                                'alternatives, which holds for every row'
                WHEN '$not' THEN 'a "$not" of an empty filter object {} is negated again, '
                                 'so it holds for every row'
                WHEN '$contains' THEN format('operator "$contains" at "%s" has an empty string, '
                                            'which every text contains', v_empty_field)
                WHEN '{}' THEN format('the value {} at "%s" (an empty operator object, or '
                                     'equality with an empty object) is negated, so it holds '
                                     'for every row that does not hold exactly {}',
                                     v_empty_field)
                WHEN '$ne' THEN format('operator "$ne" at "%s" has an empty object {}, so it '
                                      'holds for every row that does not hold exactly {}',
                                      v_empty_field)
                WHEN '$eq' THEN format('operator "$eq" at "%s" has an empty object {} under a '
                                      '$not, so the $not holds for every row that does not '
                                      'hold exactly {}', v_empty_field)
                WHEN '$nin' THEN format('operator "$nin" at "%s" has an empty list, so it holds '
                                       'for every row', v_empty_field)
                ELSE format('operator "$in" at "%s" has an empty list under a $not, so the '
                            '$not holds for every row', v_empty_field) END
            USING ERRCODE = '22023',
                  HINT = CASE WHEN v_empty_op IN ('$or', '$not')
                             THEN 'A branch whose conditions came out empty would select every '
                                  'row of the scope: leave the empty branch out, or pass the '
                                  'filter {} to select the whole scope on purpose.'
                             ELSE 'An operand that came out empty (no value picked, an empty '
                                  'search, no operator) would select every row of the scope: '
                                  'leave the condition out of the filter when its list, text or '
                                  'object is empty, or pass the filter {} to select the whole '
                                  'scope on purpose.'
                                  || CASE WHEN v_empty_op IN ('{}', '$ne', '$eq')
                                     THEN format(' To take the rows whose field is not '
                                                 'exactly {} on purpose, write {%s: '
                                                 '{"$nin": [{}]}}.', to_jsonb(v_empty_field))
                                     ELSE '' END
                             END;
    END IF;
END
$function$;
