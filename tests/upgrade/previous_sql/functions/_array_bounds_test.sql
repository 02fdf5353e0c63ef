CREATE OR REPLACE FUNCTION pgjobs._array_bounds_test(p_expr text, p_type regtype, p_depth integer DEFAULT 1)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one rule for a value JSON would carry as another value on the JSON
-- read paths (pgjobs.visible, the jsonl export): to_jsonb and row_to_json
-- write '[0:1]={a,b}' as ["a", "b"], the bounds lost, so a value read back
-- (pgjobs import, COPY) was another value; and they write a json or jsonb
-- holding JSON null inside an array or a composite ('{null,NULL}'::jsonb[],
-- a field '(null,)') as null, the SQL NULL's spelling, and a json or jsonb
-- array of more dimensions ('{{1},{2}}'::jsonb[]), or of one holding JSON
-- arrays ('{[1],[2]}'), both as [[1], [2]]. Such a value, wherever it sits
-- (the column, a domain over an array, an element of an array, a field of
-- a composite, any nesting of these), makes the whole column's value
-- travel as its PostgreSQL text, a JSON string, which every import reads
-- back exactly; any other value keeps the JSON it always had. (A json or
-- jsonb column's own JSON null has no other spelling: a JSON string is a
-- string.) Parquet, whose list column holds no bounds, refuses bounds
-- (pgjobs._parquet_column).
-- Returns the text of an SQL boolean expression over the SQL expression
-- p_expr (of type p_type): true when the value holds such an array or
-- JSON null; NULL when p_type holds no array, nor json or jsonb below the
-- top, anywhere (the caller writes the value as it did). Only pg_catalog in the text: it runs on any role's path. p_depth
-- names the aliases of the nested subqueries (1 at the top). A read of
-- the catalog. Locks nothing.
DECLARE
    v_type regtype := p_type;
    v_kind "char";
    v_elem regtype;
    v_rel oid;
    v_inner text;
    v_fields text;
    v_s text := 'b' || p_depth;
    v_att record;
BEGIN
    IF p_depth > 32 THEN
        RETURN NULL;  -- (PostgreSQL forbids a type that holds itself)
    END IF;
    -- (a domain is followed to its base type, pgjobs._base_type, only
    -- when it is one: a call of it cost as much as this function's own
    -- work, on every read of a target with such columns)
    IF (SELECT t.typtype FROM pg_catalog.pg_type t WHERE t.oid = v_type) = 'd' THEN
        v_type := pgjobs._base_type(p_type);
    END IF;
    SELECT t.typtype, nullif(t.typelem, 0)::regtype, nullif(t.typrelid, 0)
      INTO v_kind, v_elem, v_rel
      FROM pg_catalog.pg_type t WHERE t.oid = v_type;
    -- A json or jsonb inside an array or a composite (p_depth > 1): its
    -- JSON null (an element's test is the array's, below).
    IF v_type IN ('json'::regtype, 'jsonb'::regtype) THEN
        RETURN CASE WHEN p_depth > 1 THEN format(
            '(pg_catalog.%s_typeof(%s) OPERATOR(pg_catalog.=) ''null'')', v_type, p_expr) END;
    END IF;
    IF v_elem IS NOT NULL AND v_kind = 'b'
       AND EXISTS (SELECT FROM pg_catalog.pg_type t
                    WHERE t.oid = v_type AND t.typsubscript = 'array_subscript_handler'::regproc) THEN
        -- The first dimension's lower bound, then, for an array of more
        -- dimensions only, array_dims, which prints every one's bounds
        -- ('[1:2][0:1]'): none that starts other than at 1 leaves no '['
        -- once each '[1:' is gone. (array_dims alone, a text a row, made a
        -- jsonl export of a table of small arrays 1.4-1.6x as long as
        -- without the test; this, 1.26x.) An empty array has no dimension
        -- (NULL: no bound to keep).
        -- (an element of a plain scalar type holds no array: no call, each
        -- one a GUC save and restore; most arrays are of scalars)
        -- (an array of json or jsonb, through domains: more than one
        -- dimension, or an element that is JSON null or a JSON array, which
        -- row_to_json writes alike)
        -- (an array of a domain over an array, '{"{1,2}","{3}"}'::d[]:
        -- row_to_json nests each element's array as if it were a dimension,
        -- [[1, 2], [3]], which an import refuses as ragged or reads as an
        -- array of more dimensions; JSON has no form of it, so any element
        -- makes it text)
        IF (SELECT t.typsubscript = 'array_subscript_handler'::regproc
              FROM pg_catalog.pg_type t WHERE t.oid = pgjobs._base_type(v_elem)) THEN
            RETURN format('(pg_catalog.cardinality(%s) OPERATOR(pg_catalog.>) 0)', p_expr);
        ELSIF pgjobs._base_type(v_elem) IN ('json'::regtype, 'jsonb'::regtype) THEN
            v_inner := format('pg_catalog.%1$s_typeof(%2$I.e) IN (''null'', ''array'')',
                              pgjobs._base_type(v_elem), v_s);
            RETURN format('(pg_catalog.array_lower(%1$s, 1) OPERATOR(pg_catalog.<>) 1 '
                          'OR pg_catalog.array_ndims(%1$s) OPERATOR(pg_catalog.>) 1 '
                          'OR EXISTS (SELECT FROM (SELECT pg_catalog.unnest(%1$s) AS e) %2$I '
                          'WHERE %3$s))', p_expr, v_s, v_inner);
        ELSIF EXISTS (SELECT FROM pg_catalog.pg_type t
                    WHERE t.oid = v_elem
                      AND (t.typtype IN ('c', 'd')
                           OR t.typsubscript = 'array_subscript_handler'::regproc)) THEN
            v_inner := pgjobs._array_bounds_test(format('%I.e', v_s), v_elem, p_depth + 1);
        END IF;
        RETURN format('(pg_catalog.array_lower(%1$s, 1) OPERATOR(pg_catalog.<>) 1 '
                      'OR (pg_catalog.array_ndims(%1$s) OPERATOR(pg_catalog.>) 1 '
                      'AND pg_catalog.replace(pg_catalog.array_dims(%1$s), ''[1:'', '''') '
                      'OPERATOR(pg_catalog.~~) ''%%[%%'')%2$s)',
                      p_expr,
                      CASE WHEN v_inner IS NULL THEN ''
                           -- (unnest in the select list: in FROM it would
                           -- spread a composite element into its fields)
                           ELSE format(' OR EXISTS (SELECT FROM (SELECT pg_catalog.unnest(%s) AS e) %I '
                                       'WHERE %s)', p_expr, v_s, v_inner) END);
    END IF;
    IF v_kind = 'c' THEN
        FOR v_att IN
            -- (only the fields whose type may hold an array, or is json or
            -- jsonb: a field of another scalar type needs no call)
            SELECT a.attname, a.atttypid::regtype AS typ
              FROM pg_catalog.pg_attribute a
              JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = v_rel AND a.attnum > 0 AND NOT a.attisdropped
               AND (t.typtype IN ('c', 'd')
                    OR t.typsubscript = 'array_subscript_handler'::regproc
                    OR t.oid IN ('json'::regtype, 'jsonb'::regtype))
             ORDER BY a.attnum
        LOOP
            v_inner := pgjobs._array_bounds_test(format('(%s).%I', p_expr, v_att.attname),
                                                 v_att.typ, p_depth + 1);
            IF v_inner IS NOT NULL THEN
                v_fields := concat_ws(' OR ', v_fields, v_inner);
            END IF;
        END LOOP;
        RETURN '(' || v_fields || ')';  -- NULL when no field holds one
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._array_bounds_test(text, regtype, integer) IS
'SQL text of a test that expression p_expr of type p_type holds an array whose lower bounds are '
'not all 1, or a json or jsonb JSON null or ambiguous array below the top (anywhere in domains, '
'arrays, composites); NULL when the type holds none. Such a value is read and exported as JSON '
'in its PostgreSQL text.';
