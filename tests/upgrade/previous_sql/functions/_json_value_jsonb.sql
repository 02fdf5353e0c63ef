CREATE OR REPLACE FUNCTION pgjobs._json_value_jsonb(p_expr text, p_type regtype, p_depth integer DEFAULT 1)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one place that reads a value of a type that may hold json as jsonb
-- without failing on a json value jsonb refuses (a \u0000 escape, a lone
-- surrogate, a number past numeric's range: 22P05 / 22P02 / 22003, raised
-- by to_jsonb for the whole row). Returns the text of an SQL expression of
-- jsonb over the SQL expression p_expr (of type p_type): what
-- to_jsonb(p_expr) gives, except that each json value jsonb refuses, wherever
-- it sits (the value itself, a domain over json, an element of an array of
-- any dimensions, a field of a composite, any nesting of these), comes back
-- as pgjobs._json_as_jsonb gives it: a JSON string of its text. NULL when
-- p_type holds no json anywhere (to_jsonb(p_expr) never meets json then).
-- p_depth names the aliases of the nested subqueries (1 at the top).
-- Raises 54000 when the text would pass 256 kB (a type that holds json in
-- thousands of places, through a composite of composites ...: the text
-- doubled with each level): pgjobs._visible_as lets the page's own error
-- stand then, as for a type it cannot read apart.
-- Called only after to_jsonb failed (pgjobs._visible_as): a read of the
-- catalog. Locks nothing.
DECLARE
    v_type regtype := pgjobs._base_type(p_type);
    v_kind "char";
    v_elem regtype;
    v_rel oid;
    v_inner text;
    v_fields text;
    v_any boolean := false;
    v_s text := 's' || p_depth;
    v_u text := 'u' || p_depth;
    v_att record;
BEGIN
    IF p_depth > 32 THEN
        RETURN NULL;  -- (PostgreSQL forbids a type that holds itself)
    END IF;
    -- A type that holds no json anywhere is NULL at once, judged by one walk
    -- of its type graph with each type once (UNION): following it field by
    -- field cost a call per path, and a composite of two fields of a
    -- composite of two fields ... has 2^depth paths (14 levels, 16384
    -- calls: 8 s on any data exception of its table's page, a bad cursor
    -- too).
    IF NOT EXISTS (
        WITH RECURSIVE r (t) AS (
            SELECT v_type::oid
            UNION
            SELECT n.t
              FROM r
              JOIN pg_catalog.pg_type ty ON ty.oid = r.t
             CROSS JOIN LATERAL (
                 SELECT ty.typbasetype WHERE ty.typtype = 'd'
                 UNION ALL
                 SELECT ty.typelem WHERE ty.typelem <> 0
                 UNION ALL
                 SELECT a.atttypid FROM pg_catalog.pg_attribute a
                  WHERE ty.typtype = 'c' AND a.attrelid = ty.typrelid
                    AND a.attnum > 0 AND NOT a.attisdropped) n (t))
        SELECT FROM r WHERE r.t = 'json'::regtype::oid) THEN
        RETURN NULL;
    END IF;
    IF v_type = 'json'::regtype THEN
        RETURN format('pgjobs._json_as_jsonb((%s)::pg_catalog.json)', p_expr);
    END IF;
    SELECT t.typtype, nullif(t.typelem, 0)::regtype, nullif(t.typrelid, 0)
      INTO v_kind, v_elem, v_rel
      FROM pg_catalog.pg_type t WHERE t.oid = v_type;
    IF v_elem IS NOT NULL AND v_kind = 'b'
       AND EXISTS (SELECT FROM pg_catalog.pg_type t
                    WHERE t.oid = v_type AND t.typsubscript = 'array_subscript_handler'::regproc) THEN
        -- An array: its elements in storage order (unnest in the select
        -- list: in FROM it would spread a composite element into its
        -- fields), nested back into its
        -- dimensions as to_jsonb nests them (lower bounds dropped, as to_jsonb
        -- drops them).
        v_inner := pgjobs._json_value_jsonb(format('%I.e', v_u), v_elem, p_depth + 1);
        IF v_inner IS NULL THEN
            RETURN NULL;
        END IF;
        IF length(v_inner) > 262144 THEN
            -- (the one limit on the text built: pgjobs._visible_as takes
            -- 54000 for "no such read", and the page's own error stands)
            RAISE EXCEPTION 'type % holds json in too many places to read each apart', p_type
                USING ERRCODE = '54000',
                HINT = 'Read the column with a query of your own, e.g. its text (column::text).';
        END IF;
        RETURN format(
            '(SELECT pgjobs._jsonb_dims_nest(ARRAY(SELECT %1$s FROM '
            '(SELECT pg_catalog.unnest(%2$I.a) AS e) %3$I), '
            'ARRAY(SELECT pg_catalog.array_length(%2$I.a, d) '
            'FROM pg_catalog.generate_series(1, pg_catalog.array_ndims(%2$I.a)) d ORDER BY d)) '
            'FROM (SELECT (%4$s) AS a) %2$I WHERE %2$I.a IS NOT NULL)',
            v_inner, v_s, v_u, p_expr);
    END IF;
    IF v_kind = 'c' THEN
        -- A composite: each field by name, in the object to_jsonb builds
        -- (jsonb orders the keys); a NULL composite is NULL, one whose fields
        -- are all NULL an object of nulls, as to_jsonb has them.
        FOR v_att IN
            SELECT a.attname, a.atttypid::regtype AS typ
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = v_rel AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum
        LOOP
            v_inner := pgjobs._json_value_jsonb(format('(%I.c).%I', v_s, v_att.attname),
                                                v_att.typ, p_depth + 1);
            v_any := v_any OR v_inner IS NOT NULL;
            v_fields := concat_ws(' || ', v_fields,
                format('pg_catalog.jsonb_build_object(%L, %s)', v_att.attname,
                       coalesce(v_inner, format('pg_catalog.to_jsonb((%I.c).%I)', v_s, v_att.attname))));
            IF length(v_fields) > 262144 THEN
                -- (the one limit on the text built: pgjobs._visible_as takes
                -- 54000 for "no such read", and the page's own error stands)
                RAISE EXCEPTION 'type % holds json in too many places to read each apart', p_type
                    USING ERRCODE = '54000',
                    HINT = 'Read the column with a query of your own, e.g. its text (column::text).';
            END IF;
        END LOOP;
        IF NOT v_any THEN
            RETURN NULL;
        END IF;
        RETURN format('(SELECT %s FROM (SELECT (%s) AS c) %I WHERE (%I.c)::pg_catalog.text IS NOT NULL)',
                      v_fields, p_expr, v_s, v_s);
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._json_value_jsonb(text, regtype, integer) IS
'SQL text reading expression p_expr of type p_type as to_jsonb does, except that a json value jsonb '
'refuses (anywhere in arrays, composites, domains) comes back as a JSON string of its text; NULL when '
'the type holds no json.';
