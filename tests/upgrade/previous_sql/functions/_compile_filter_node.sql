-- The signature of releases before the scope was passed down: gone in
-- the transaction that creates this one (pgjobs migrate applies every
-- function file in one). A migration dropping it left the previous
-- release's functions, which serve every read and submit until that
-- transaction commits, calling a function that no longer existed (42883).
DROP FUNCTION IF EXISTS pgjobs._compile_filter_node(jsonb, jsonb, name, integer, integer, text[]);

CREATE OR REPLACE FUNCTION pgjobs._compile_filter_node(
    p_node     jsonb,
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
-- Compile one filter object: the AND of its keys, each a field condition or
-- a logical operator ($and, $or, $not). p_clauses counts the clauses compiled
-- so far (limit 1,000); p_depth is this object's nesting level (limit 16).
-- An $or of 9 or more branches that each test one and the same field for
-- equality with a scalar ({"f": v} or {"f": {"$eq": v}}) compiles as that
-- field's $in of those values, which is hashed (see
-- pgjobs._compile_filter_document_op): the same rows (OR of equalities is
-- membership; NULL counts as "not matched" either way), at a cost per row
-- that does not grow with the branches. Clauses count as written.
-- p_paths gathers every document path the filter resolves (dotted, as
-- written), at any depth: pgjobs._unknown_fields checks them against the
-- scope's rows. p_scope_column and p_scope_literal: the scope column and the
-- scope (a typed literal) when the filter selects rows of one scope (NULL
-- otherwise), for pgjobs._compile_filter_field. Locks nothing.
DECLARE
    v_entry  record;
    v_elem   jsonb;
    v_sub    text;
    v_subs   text[];
    v_parts  text[] := '{}'::text[];
    v_ord    bigint;
    v_folded bigint[];
    v_fold   record;
BEGIN
    IF p_depth > 16 THEN
        RAISE EXCEPTION 'filter nests deeper than 16 levels'
            USING ERRCODE = '22023',
                  HINT = 'Flatten the filter: several keys in one object are ANDed, and $and / '
                         '$or take many elements.';
    END IF;

    FOR v_entry IN SELECT e.key, e.value FROM jsonb_each(p_node) e LOOP
        IF v_entry.key = '' THEN
            RAISE EXCEPTION 'empty key in filter'
                USING ERRCODE = '22023',
                      HINT = 'A key names a column or a document field (a.b.c for nested fields).';
        END IF;

        IF v_entry.key IN ('$and', '$or') THEN
            p_clauses := p_clauses + 1;
            IF jsonb_typeof(v_entry.value) <> 'array' THEN
                RAISE EXCEPTION 'operator "%" needs an array of filter objects, got %',
                                v_entry.key, left(v_entry.value::text, 200)
                    USING ERRCODE = '22023',
                          HINT = format('e.g. {"%s": [{"a": 1}, {"b": {"$gt": 2}}]}', v_entry.key);
            END IF;
            -- An empty list was the neutral element: {"$and": []} selected
            -- every row of the scope, so a client that built its $and from
            -- a list of conditions that came out empty deleted a whole scope
            -- ({"$or": []} selected none). MongoDB refuses both.
            IF jsonb_array_length(v_entry.value) = 0 THEN
                RAISE EXCEPTION 'operator "%" needs at least one filter object, got []',
                                v_entry.key
                    USING ERRCODE = '22023',
                          HINT = CASE v_entry.key
                              WHEN '$and' THEN 'An empty $and would select every row of the '
                                   'scope (MongoDB refuses it too). To select the whole scope '
                                   'on purpose, pass the filter {}; else give the conditions, '
                                   'e.g. {"$and": [{"a": 1}, {"b": {"$gt": 2}}]}.'
                              ELSE 'An empty $or would select no row (MongoDB refuses it '
                                   'too): leave it out, or give the alternatives, e.g. '
                                   '{"$or": [{"a": 1}, {"b": {"$gt": 2}}]}.' END;
            END IF;
            v_subs := '{}'::text[];
            v_folded := '{}'::bigint[];
            IF v_entry.key = '$or' THEN
                FOR v_fold IN
                    WITH c AS (
                        SELECT x.ord, k.key AS field,
                               CASE WHEN jsonb_typeof(k.value) = 'object' THEN k.value -> '$eq'
                                    ELSE k.value END AS val
                          FROM jsonb_array_elements(v_entry.value) WITH ORDINALITY x(elem, ord)
                          CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(x.elem) = 'object'
                                                             THEN x.elem ELSE '{}' END) k
                         WHERE x.elem - k.key = '{}'::jsonb
                           AND left(k.key, 1) <> '$'
                           AND CASE WHEN jsonb_typeof(k.value) = 'object'
                                    THEN k.value ? '$eq' AND k.value - '$eq' = '{}'::jsonb
                                         AND jsonb_typeof(k.value -> '$eq')
                                             IN ('string', 'number', 'boolean', 'null')
                                    ELSE jsonb_typeof(k.value)
                                         IN ('string', 'number', 'boolean', 'null') END)
                    SELECT c.field, jsonb_agg(c.val ORDER BY c.ord) AS vals,
                           array_agg(c.ord) AS ords
                      FROM c GROUP BY c.field HAVING count(*) >= 9
                LOOP
                    SELECT f.p_clauses, f.p_paths, f.p_sql INTO p_clauses, p_paths, v_sub
                      FROM pgjobs._compile_filter_field(
                               v_fold.field, jsonb_build_object('$in', v_fold.vals), p_columns,
                               p_document, p_scope_column, p_scope_literal, p_depth + 1,
                               p_clauses, p_paths) f;
                    p_clauses := p_clauses + cardinality(v_fold.ords) - 1;
                    v_subs := v_subs || ('(' || v_sub || ')');
                    v_folded := v_folded || v_fold.ords;
                END LOOP;
            END IF;
            FOR v_elem, v_ord IN
                SELECT x.value, x.ord
                  FROM jsonb_array_elements(v_entry.value) WITH ORDINALITY x(value, ord)
            LOOP
                CONTINUE WHEN v_ord = ANY (v_folded);
                IF jsonb_typeof(v_elem) <> 'object' THEN
                    RAISE EXCEPTION 'operator "%" needs an array of filter objects, found %',
                                    v_entry.key, left(v_elem::text, 200)
                        USING ERRCODE = '22023',
                              HINT = format('e.g. {"%s": [{"a": 1}, {"b": {"$gt": 2}}]}',
                                            v_entry.key);
                END IF;
                SELECT n.p_clauses, n.p_paths, n.p_sql INTO p_clauses, p_paths, v_sub
                  FROM pgjobs._compile_filter_node(v_elem, p_columns, p_document,
                                                   p_scope_column, p_scope_literal,
                                                   p_depth + 1, p_clauses, p_paths) n;
                v_subs := v_subs || ('(' || v_sub || ')');
            END LOOP;
            v_parts := v_parts || ('(' || array_to_string(v_subs,
                CASE v_entry.key WHEN '$and' THEN ' AND ' ELSE ' OR ' END) || ')');

        ELSIF v_entry.key = '$not' THEN
            p_clauses := p_clauses + 1;
            IF jsonb_typeof(v_entry.value) <> 'object' THEN
                RAISE EXCEPTION 'operator "$not" needs a filter object, got %',
                                left(v_entry.value::text, 200)
                    USING ERRCODE = '22023', HINT = 'e.g. {"$not": {"status": "done"}}';
            END IF;
            SELECT n.p_clauses, n.p_paths, n.p_sql INTO p_clauses, p_paths, v_sub
              FROM pgjobs._compile_filter_node(v_entry.value, p_columns, p_document,
                                               p_scope_column, p_scope_literal,
                                               p_depth + 1, p_clauses, p_paths) n;
            -- NULL (unknown) counts as "not matched" before negation, so
            -- negating never turns a missing field into NULL.
            v_parts := v_parts || ('(NOT coalesce((' || v_sub || '), false))');

        ELSIF left(v_entry.key, 1) = '$' THEN
            RAISE EXCEPTION 'unknown operator "%" at the top of a filter object', v_entry.key
                USING ERRCODE = '22023',
                      HINT = 'Valid here: $and, $or, $not, or a field name. Field operators '
                             '($eq $ne $gt $gte $lt $lte $in $nin $contains $exists) go inside a '
                             'field: {"age": {"$gt": 30}}.';

        ELSE
            SELECT f.p_clauses, f.p_paths, f.p_sql INTO p_clauses, p_paths, v_sub
              FROM pgjobs._compile_filter_field(v_entry.key, v_entry.value, p_columns,
                                                p_document, p_scope_column, p_scope_literal,
                                                p_depth, p_clauses, p_paths) f;
            v_parts := v_parts || v_sub;
        END IF;

        IF p_clauses > 1000 THEN
            RAISE EXCEPTION 'filter has more than 1000 clauses'
                USING ERRCODE = '22023',
                      HINT = 'Use $in with a list of values instead of many $or branches.';
        END IF;
    END LOOP;

    p_sql := CASE cardinality(v_parts)
                 WHEN 0 THEN 'true'
                 WHEN 1 THEN v_parts[1]
                 ELSE '(' || array_to_string(v_parts, ' AND ') || ')'
             END;
END
$function$;
