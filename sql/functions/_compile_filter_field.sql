-- The signature of releases before the scope was passed down: gone in
-- the transaction that creates this one (pgjobs migrate applies every
-- function file in one). A migration dropping it left the previous
-- release's functions, which serve every read and submit until that
-- transaction commits, calling a function that no longer existed (42883).
DROP FUNCTION IF EXISTS pgjobs._compile_filter_field(text, jsonb, jsonb, name, integer, integer,
                                                     text[]);

CREATE OR REPLACE FUNCTION pgjobs._compile_filter_field(
    p_field    text,
    p_cond     jsonb,
    p_columns  jsonb,
    p_document name,
    p_scope_column name,
    p_scope_literal text,
    p_depth    integer,
    INOUT p_clauses integer,
    INOUT p_paths text[],
    OUT p_sql  text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $function$
-- Compile the condition on one field: a literal (equality) or an object of
-- operators, ANDed. The field is a column of the target when one has that
-- exact name, else a dotted path into the document column. Column clauses are
-- test-evaluated once on a typed NULL so a bad value or a type without the
-- operator fails here with 22023, not later inside a job. A document path
-- is appended to p_paths (once).
-- Two columns take only the conditions that mean something on them:
-- * The document column itself compared as a whole ({"data": {"$ne":
--   {...}}}, {"data": {"$gt": 1}}, {"data": {"status": "x"}}) holds for
--   almost every row or for almost none: jsonb orders every object above
--   every number, a document rarely equals a given one, and a $ne, $nin or
--   $not of that takes the whole scope, as a misspelt field would. Only its
--   presence is tested: null, {"$ne": null}, {"$exists": ...}, and $in /
--   $nin lists of null; anything else raises 22023, the hint naming the
--   field path to write instead.
-- * The scope column, when the filter selects rows of one scope
--   (p_scope_literal: that scope as a typed literal): every row of the
--   scope holds the same value, so the condition is true for all of them
--   or for none. Only a restatement of the scope is taken (a literal, $eq,
--   or $in that holds for it); anything else ({"table_id": {"$ne": 8}},
--   another scope's value) raises 22023.
-- Locks nothing.
DECLARE
    v_type      text;
    v_column    text;
    v_hint      text;
    v_ref       text;
    v_test      text;
    v_path      text[];
    v_seg       text;
    v_is_ops    boolean;
    v_has_ops   boolean;
    v_has_plain boolean;
    v_entry     record;
    v_sub       text;
    v_parts     text[] := '{}'::text[];
    v_scope_ref text;
    v_holds     boolean;
    v_example   text;
    v_probe     jsonb;
    v_foreign   boolean := false;
    v_ops constant text[] := ARRAY['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin',
                                   '$contains', '$exists', '$not'];
    v_ops_hint constant text :=
        'Valid field operators: $eq $ne $gt $gte $lt $lte $in $nin $contains $exists $not; '
        'logical operators ($and $or $not) go at the level of field names.';
BEGIN
    IF p_depth > 16 THEN
        RAISE EXCEPTION 'filter nests deeper than 16 levels at "%"', p_field
            USING ERRCODE = '22023', HINT = 'Flatten the filter.';
    END IF;

    -- Resolve the field: a column first, else a path in the document.
    IF p_columns ? p_field THEN
        v_column := p_columns ->> p_field;  -- the column's type (a domain: the domain)
        -- Refused below, per operator, but for its presence.
        v_foreign := pgjobs._foreign_comparisons(v_column::regtype);
        -- Values are cast to the type without modifiers, a domain's base
        -- type (pgjobs._loose_type): a cast to a domain over varchar(8)
        -- truncates 'acme0001x' to 'acme0001', one over numeric(6,2)
        -- rounds 1.005 to 1.01, and the filter then covers rows that
        -- plain SQL's code = 'acme0001x' does not.
        v_type := format_type(pgjobs._loose_type(v_column::regtype), -1);
        IF v_type = 'json' THEN
            -- json has no equality or ordering; compare it as jsonb, through
            -- pgjobs._json_as_jsonb: a plain cast raised on a value jsonb
            -- cannot hold (a \u0000 escape), for the job's pages and every
            -- read of its scope, though the typed NULL below passed.
            v_ref := format('pgjobs._json_as_jsonb(%I)', p_field);
            v_test := format('pgjobs._json_as_jsonb(NULL::%s)', v_column);
            v_scope_ref := format('((%s)::pg_catalog.jsonb)', p_scope_literal);
            v_type := 'jsonb';
        ELSIF v_type <> v_column AND right(v_type, 2) = '[]' THEN
            -- An array of a domain: PostgreSQL compares it with an array of
            -- the same type only (code8[] = varchar[] does not exist), so
            -- the column is read as the array of the base type too.
            v_ref := format('(%I)::%s', p_field, pgjobs._type_sql(v_type));
            v_test := format('((NULL::%s)::%s)', v_column, pgjobs._type_sql(v_type));
            v_scope_ref := format('((%s)::%s)', p_scope_literal, pgjobs._type_sql(v_type));
        ELSE
            v_ref := format('%I', p_field);
            -- The test below evaluates the clause on a NULL of the column's
            -- own type: an operator that type lacks (a domain over an enum
            -- has none) fails then, not inside a job.
            v_test := format('(NULL::%s)', v_column);
            v_scope_ref := format('(%s)', p_scope_literal);
        END IF;
        IF p_scope_literal IS NULL OR p_field IS DISTINCT FROM p_scope_column::text THEN
            v_scope_ref := NULL;  -- not the scope column of a scoped filter
        END IF;
    ELSIF p_document IS NULL THEN
        RAISE EXCEPTION 'unknown field "%": the target has no such column and no document column',
                        p_field
            USING ERRCODE = '22023',
                  HINT = format('Columns: %s.', (SELECT string_agg(k, ', ' ORDER BY k)
                                                   FROM jsonb_object_keys(p_columns) k));
    ELSE
        v_path := string_to_array(p_field, '.');
        IF NOT p_field = ANY (coalesce(p_paths, '{}')) THEN
            p_paths := coalesce(p_paths, '{}') || p_field;
        END IF;
        FOREACH v_seg IN ARRAY v_path LOOP
            IF v_seg = '' THEN
                RAISE EXCEPTION 'field "%" has an empty path segment', p_field
                    USING ERRCODE = '22023',
                          HINT = 'Nested document fields are written a.b.c, without empty parts.';
            ELSIF left(v_seg, 1) = '$' THEN
                RAISE EXCEPTION 'unknown operator "%" at "%"', v_seg, p_field
                    USING ERRCODE = '22023',
                          HINT = 'Field names must not start with $. ' || v_ops_hint;
            END IF;
        END LOOP;
    END IF;

    -- An object whose keys all start with $ is an operator object; an object
    -- without any is a literal; a mix is ambiguous.
    IF jsonb_typeof(p_cond) = 'object' THEN
        SELECT coalesce(bool_or(left(k, 1) = '$'), false),
               coalesce(bool_or(left(k, 1) <> '$'), false)
          INTO v_has_ops, v_has_plain
          FROM jsonb_object_keys(p_cond) k;
        IF v_has_ops AND v_has_plain THEN
            RAISE EXCEPTION 'the condition on "%" mixes operators and field names: %',
                            p_field, left(p_cond::text, 200)
                USING ERRCODE = '22023',
                      HINT = 'Use {"field": {"$gt": 1, "$lt": 5}} for operators, or '
                             '{"field": {"$eq": {...}}} to compare with an object.';
        END IF;
        v_is_ops := v_has_ops;
    ELSE
        v_is_ops := false;
    END IF;

    FOR v_entry IN
        SELECT e.key, e.value FROM jsonb_each(p_cond) e WHERE v_is_ops
        UNION ALL
        SELECT '$eq', p_cond WHERE NOT v_is_ops
    LOOP
        IF NOT v_entry.key = ANY (v_ops) THEN
            RAISE EXCEPTION 'unknown operator "%" at "%"', v_entry.key, p_field
                USING ERRCODE = '22023', HINT = v_ops_hint;
        END IF;
        p_clauses := p_clauses + 1;
        IF v_entry.key <> '$not' THEN
            -- The operand's shape, the same for a column and a document path.
            PERFORM pgjobs._check_filter_operand(p_field, v_entry.key, v_entry.value);
        END IF;

        -- A type compared by operators outside pg_catalog: its presence only.
        IF v_foreign AND v_entry.key <> '$not' AND v_entry.key <> '$exists'
           AND NOT (v_entry.key IN ('$eq', '$ne') AND jsonb_typeof(v_entry.value) = 'null') THEN
            RAISE EXCEPTION 'operator "%" at "%": a column of type %, whose comparison operators '
                            'are not in pg_catalog', v_entry.key, p_field, v_column
                USING ERRCODE = '22023',
                      HINT = format('pgjobs compares with pg_catalog''s operators only (citext '
                                    'would compare as text, unlike your own queries): filter on '
                                    'a column of a built-in type or a document field instead; '
                                    'on this column only its presence is tested ({%s: null}, '
                                    '{%1$s: {"$exists": true}}).', to_jsonb(p_field));
        END IF;

        -- The document column as a whole: its presence only (see above).
        IF v_type IS NOT NULL AND p_field = p_document::text AND v_entry.key <> '$not'
           AND NOT ((v_entry.key IN ('$eq', '$ne') AND jsonb_typeof(v_entry.value) = 'null')
                    OR v_entry.key = '$exists'
                    OR (v_entry.key IN ('$in', '$nin')
                        AND NOT jsonb_path_exists(v_entry.value, 'strict $[*] ? (@ != null)')))
        THEN
            -- A literal object ({"data": {"status": "x"}}) is most often
            -- meant as its fields: the hint spells its first one as a path.
            SELECT format('{%s: %s}', to_jsonb(e.key), left(e.value::text, 60)) INTO v_example
              FROM jsonb_each(CASE WHEN jsonb_typeof(v_entry.value) = 'object'
                                   THEN v_entry.value ELSE '{}' END) e
             ORDER BY e.key LIMIT 1;
            RAISE EXCEPTION 'filter compares the document column "%" as a whole (operator "%" '
                            'with %): that matches almost every row or almost none',
                            p_field, v_entry.key, left(v_entry.value::text, 200)
                USING ERRCODE = '22023',
                HINT = format('A filter key names a field inside the document: write %s '
                              '(a.b.c for a nested field), not {%s: ...}. On the document '
                              'column itself only its presence is tested: {%2$s: null} for '
                              'rows without a document, {%2$s: {"$exists": true}} for rows '
                              'with one.',
                              coalesce(v_example, '{"status": {"$ne": "done"}}'),
                              to_jsonb(p_field));
        END IF;

        IF v_entry.key = '$not' THEN
            SELECT f.p_clauses, f.p_paths, f.p_sql INTO p_clauses, p_paths, v_sub
              FROM pgjobs._compile_filter_field(p_field, v_entry.value, p_columns, p_document,
                                                p_scope_column, p_scope_literal,
                                                p_depth + 1, p_clauses, p_paths) f;
            v_sub := '(NOT coalesce(' || v_sub || ', false))';
        ELSIF v_type IS NOT NULL THEN
            -- Test-evaluate on a typed NULL: bad casts and missing operators
            -- surface now, naming the field.
            BEGIN
                EXECUTE 'SELECT ' || pgjobs._compile_filter_column_op(
                    v_test, v_type, p_field, v_entry.key, v_entry.value);
                -- A composite compares field by field, looking each
                -- field's operator up only on two non-NULL values (a
                -- point field has no equality): so once more on the
                -- operand itself, or the job's first page would fail.
                IF v_entry.key IN ('$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin')
                   AND EXISTS (SELECT FROM pg_catalog.pg_type t
                                WHERE t.oid = v_type::regtype AND t.typtype = 'c') THEN
                    SELECT x.value INTO v_probe
                      FROM jsonb_array_elements(CASE jsonb_typeof(v_entry.value)
                                                    WHEN 'array' THEN v_entry.value
                                                    ELSE jsonb_build_array(v_entry.value)
                                                END) x
                     WHERE jsonb_typeof(x.value) <> 'null' LIMIT 1;
                    IF v_probe IS NOT NULL THEN
                        EXECUTE 'SELECT ' || pgjobs._compile_filter_column_op(
                            pgjobs._typed_literal(v_probe #>> '{}', v_type), v_type, p_field,
                            v_entry.key, v_entry.value);
                    END IF;
                END IF;
            EXCEPTION
                WHEN invalid_parameter_value THEN RAISE;
                WHEN OTHERS THEN
                    -- A name of an oid-alias type that its input found no
                    -- object for (42704, 42883, ... as an operator's absence
                    -- is): the value's fault (pgjobs._oid_alias_hint).
                    v_hint := pgjobs._oid_alias_hint(v_type::regtype, SQLSTATE);
                    IF v_hint IS NULL AND SQLSTATE IN ('42883', '42704', '0A000', '42804',
                                                       '42725', '42P18') THEN
                        -- The type has no such operator ("operator does not
                        -- exist", "could not identify an equality operator"):
                        -- not the value's fault, and not the engine's text to show.
                        RAISE EXCEPTION 'operator "%" does not apply to column "%" (type %): '
                                        'its values have no %', v_entry.key, p_field, v_column,
                                        CASE WHEN v_entry.key IN ('$eq', '$ne', '$in', '$nin')
                                             THEN 'equality' ELSE 'order' END
                            USING ERRCODE = '22023',
                                  HINT = format('Test the column''s presence instead ({%s: '
                                                'null}, {%1$s: {"$exists": true}}), or filter '
                                                'on a column of a comparable type or a '
                                                'document field. See docs/filters.md, "Column '
                                                'types".', to_jsonb(p_field));
                    END IF;
                    RAISE EXCEPTION 'invalid value for column "%" (type %) with operator "%": %',
                                    p_field, v_column, v_entry.key, SQLERRM
                        USING ERRCODE = '22023',
                              HINT = coalesce(v_hint, format('Values are cast to %s.',
                                  CASE WHEN v_type = v_column
                                       THEN 'the column type ' || v_type
                                       ELSE format('%s (the column type %s, without domains '
                                                   'and modifiers)', v_type, v_column)
                                  END));
            END;
            IF v_scope_ref IS NOT NULL AND v_entry.key <> '$not' THEN
                -- The scope column of a scoped filter: only a restatement
                -- of the scope (see above). The clause is evaluated on the
                -- scope itself.
                v_holds := false;
                IF v_entry.key IN ('$eq', '$in') THEN
                    EXECUTE 'SELECT coalesce(' || pgjobs._compile_filter_column_op(
                        v_scope_ref, v_type, p_field, v_entry.key, v_entry.value) || ', false)'
                       INTO v_holds;
                END IF;
                IF NOT v_holds THEN
                    EXECUTE format('SELECT (%s)::pg_catalog.text', p_scope_literal)
                       INTO v_example;
                    RAISE EXCEPTION 'filter condition on the scope column "%" (operator "%" '
                                    'with %) is decided by the scope %: every row of it holds '
                                    '"%" = %', p_field, v_entry.key,
                                    left(v_entry.value::text, 200), v_example, p_field,
                                    v_example
                        USING ERRCODE = '22023',
                        HINT = format('The condition is true for every row of the scope or for '
                                      'none (so a $ne, $nin or $not of it would take the whole '
                                      'scope). Leave %s out of the filter, or state the scope '
                                      'itself ({%s: %s}); to work on another scope, submit the '
                                      'job for that scope.', to_jsonb(p_field),
                                      to_jsonb(p_field), to_jsonb(v_example));
                END IF;
            END IF;
            v_sub := pgjobs._compile_filter_column_op(v_ref, v_type, p_field, v_entry.key,
                                                     v_entry.value);
        ELSE
            v_sub := pgjobs._compile_filter_document_op(p_document, v_path, p_field, v_entry.key,
                                                       v_entry.value);
        END IF;
        v_parts := v_parts || v_sub;
    END LOOP;

    p_sql := CASE cardinality(v_parts)
                 WHEN 1 THEN v_parts[1]
                 ELSE '(' || array_to_string(v_parts, ' AND ') || ')'
             END;
END
$function$;
