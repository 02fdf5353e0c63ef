CREATE OR REPLACE FUNCTION pgjobs._empty_operands(
    p_filter  jsonb,
    p_negated boolean DEFAULT false,
    p_field   text DEFAULT NULL)
RETURNS TABLE (field text, op text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The clauses of a filter (already compiled: pgjobs._compile_filter has
-- checked its shape) whose operand came out empty and which then hold for
-- every row: {"f": {"$nin": []}} (not in nothing), {"f": {"$contains":
-- ""}} (every text contains ""), {"$not": {"f": {"$in": []}}} (a
-- field's or a filter's $not; two cancel), and a field's empty object
-- negated ({"$not": {"f": {}}}, {"f": {"$not": {"$eq": {}}}}, {"f":
-- {"$ne": {}}}: every row not holding exactly {}). A client that built its list or
-- its search text from a selection that came out empty (no status picked,
-- an empty search box) submitted a delete of the whole scope, as an empty
-- $and did (refused by pgjobs._compile_filter_node). Columns and document
-- fields alike. The same for a filter object that came out empty ({}, or
-- $and lists of {} only): a branch of an $or (which then holds for every
-- row) and a $not of one negated again ({"$not": {"$not": {}}}); {} as the
-- whole filter, or beside other conditions of an $and, is the whole scope
-- asked for. One row per clause, in the order met: the field as written
-- (NULL for an $or or a $not) and the operator ('$in' for a negated $in,
-- '{}' for a field's negated empty object). The same clauses where they
-- select no row ($in: [] as written, a negated $nin: [] or $contains: "")
-- are not returned: they take nothing. Locks nothing.
DECLARE
    v_entry record;
    v_elem jsonb;
    v_is_ops boolean;
    -- A filter object with no condition at any depth: {} itself, or $and
    -- lists of such objects only ({"$and": [{}]}); it holds for every row.
    v_no_condition constant jsonpath :=
        'strict $.** ? (@.type() == "object").keyvalue() ? (@.key != "$and")'::jsonpath;
BEGIN
    IF p_field IS NULL THEN
        IF jsonb_typeof(p_filter) IS DISTINCT FROM 'object' THEN
            RETURN;
        END IF;
        FOR v_entry IN SELECT e.key, e.value FROM jsonb_each(p_filter) e LOOP
            IF v_entry.key IN ('$and', '$or') AND jsonb_typeof(v_entry.value) = 'array' THEN
                -- A branch {} (a list of conditions that came out empty)
                -- holds for every row, and so does its $or.
                IF v_entry.key = '$or' AND NOT p_negated
                   AND EXISTS (SELECT 1 FROM jsonb_array_elements(v_entry.value) x
                                WHERE jsonb_typeof(x.value) = 'object'
                                  AND NOT jsonb_path_exists(x.value, v_no_condition)) THEN
                    field := NULL;
                    op := '$or';
                    RETURN NEXT;
                END IF;
                FOR v_elem IN SELECT x.value FROM jsonb_array_elements(v_entry.value) x LOOP
                    RETURN QUERY SELECT * FROM pgjobs._empty_operands(v_elem, p_negated);
                END LOOP;
            ELSIF v_entry.key = '$not' THEN
                -- {"$not": {}} holds for no row; negated again, for every row.
                IF p_negated AND jsonb_typeof(v_entry.value) = 'object'
                   AND NOT jsonb_path_exists(v_entry.value, v_no_condition) THEN
                    field := NULL;
                    op := '$not';
                    RETURN NEXT;
                END IF;
                RETURN QUERY SELECT * FROM pgjobs._empty_operands(v_entry.value, NOT p_negated);
            ELSIF left(v_entry.key, 1) <> '$' THEN
                RETURN QUERY SELECT * FROM pgjobs._empty_operands(v_entry.value, p_negated,
                                                                  v_entry.key);
            END IF;
        END LOOP;
        RETURN;
    END IF;
    -- A field's condition that is the empty object {}: equality with {}
    -- (which takes only the rows holding exactly {}), negated it holds for
    -- every other row. An operator object that came out empty ({"f": {}}
    -- under a $not, the field's or a filter's) was a delete of the whole
    -- scope; so is {"$eq": {}} negated and {"$ne": {}} as written. Reported
    -- with op '{}' (the field's value itself) or the operator.
    IF p_negated AND p_filter = '{}'::jsonb THEN
        field := p_field;
        op := '{}';
        RETURN NEXT;
        RETURN;
    END IF;
    -- A field's condition: an operator object (every key starts with $), else
    -- a literal compared for equality (never empty in the other senses).
    v_is_ops := jsonb_typeof(p_filter) = 'object'
                AND EXISTS (SELECT 1 FROM jsonb_object_keys(p_filter) k)
                AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(p_filter) k
                                 WHERE left(k, 1) <> '$');
    FOR v_entry IN SELECT e.key, e.value FROM jsonb_each(p_filter) e WHERE v_is_ops LOOP
        IF v_entry.key = '$not' THEN
            RETURN QUERY SELECT * FROM pgjobs._empty_operands(v_entry.value, NOT p_negated,
                                                              p_field);
        ELSIF ((v_entry.key = '$nin' AND NOT p_negated) OR (v_entry.key = '$in' AND p_negated))
              AND jsonb_typeof(v_entry.value) = 'array'
              AND jsonb_array_length(v_entry.value) = 0 THEN
            field := p_field;
            op := v_entry.key;
            RETURN NEXT;
        ELSIF ((v_entry.key = '$ne' AND NOT p_negated) OR (v_entry.key = '$eq' AND p_negated))
              AND v_entry.value = '{}'::jsonb THEN
            field := p_field;
            op := v_entry.key;
            RETURN NEXT;
        ELSIF v_entry.key = '$contains' AND NOT p_negated
              AND v_entry.value = '""'::jsonb THEN
            field := p_field;
            op := v_entry.key;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
