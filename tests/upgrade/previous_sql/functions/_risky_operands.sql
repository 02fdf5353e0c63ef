CREATE OR REPLACE FUNCTION pgjobs._risky_operands(
    p_filter  jsonb,
    p_columns jsonb,
    p_negated boolean DEFAULT false,
    p_field   text DEFAULT NULL)
RETURNS TABLE (path text, op text, operand jsonb)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The operands of a filter's comparisons (already compiled:
-- pgjobs._compile_filter has checked its shape) that match every row whose
-- value is not like the operand: $ne and $nin, and $eq, $in, ranges and
-- $contains under a $not (a field's or a filter's; two cancel). One row per
-- operand (an $in's or $nin's: per element), with the operator that holds
-- it ($in and $nin for their elements) and the path: a document path, or
-- a key naming a json or jsonb column (p_columns ->> key = 'json'; a key
-- naming any other column is compared as its type and never returned, as
-- the compiler resolves it). NULL operands test presence and are left out.
-- pgjobs._risky_comparisons reads the operands' types, and
-- pgjobs._require_value_types judges them: their type at the path, and
-- every field and element inside an object or array operand
-- (pgjobs._operand_positions). Locks nothing.
DECLARE
    v_entry record;
    v_elem jsonb;
    v_is_ops boolean;
BEGIN
    IF jsonb_typeof(p_filter) IS DISTINCT FROM 'object' AND p_field IS NULL THEN
        RETURN;
    END IF;
    IF p_field IS NULL THEN
        FOR v_entry IN SELECT e.key, e.value FROM jsonb_each(p_filter) e LOOP
            IF v_entry.key IN ('$and', '$or') AND jsonb_typeof(v_entry.value) = 'array' THEN
                FOR v_elem IN SELECT x.value FROM jsonb_array_elements(v_entry.value) x LOOP
                    RETURN QUERY SELECT * FROM pgjobs._risky_operands(v_elem, p_columns,
                                                                      p_negated);
                END LOOP;
            ELSIF v_entry.key = '$not' THEN
                RETURN QUERY SELECT * FROM pgjobs._risky_operands(v_entry.value, p_columns,
                                                                  NOT p_negated);
            ELSIF left(v_entry.key, 1) <> '$'
                  AND (NOT p_columns ? v_entry.key OR p_columns ->> v_entry.key = 'json') THEN
                RETURN QUERY SELECT * FROM pgjobs._risky_operands(v_entry.value, p_columns,
                                                                  p_negated, v_entry.key);
            END IF;
        END LOOP;
        RETURN;
    END IF;
    -- A field's condition: an operator object (every key starts with $), else
    -- a literal compared for equality.
    v_is_ops := jsonb_typeof(p_filter) = 'object'
                AND EXISTS (SELECT 1 FROM jsonb_object_keys(p_filter) k)
                AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(p_filter) k
                                 WHERE left(k, 1) <> '$');
    FOR v_entry IN
        SELECT e.key, e.value FROM jsonb_each(p_filter) e WHERE v_is_ops
        UNION ALL
        SELECT '$eq', p_filter WHERE NOT v_is_ops
    LOOP
        IF v_entry.key = '$not' THEN
            RETURN QUERY SELECT * FROM pgjobs._risky_operands(v_entry.value, p_columns,
                                                              NOT p_negated, p_field);
        ELSIF (v_entry.key IN ('$eq', '$gt', '$gte', '$lt', '$lte', '$contains') AND p_negated)
              OR (v_entry.key = '$ne' AND NOT p_negated) THEN
            IF jsonb_typeof(v_entry.value) <> 'null' THEN
                path := p_field;
                op := v_entry.key;
                operand := v_entry.value;
                RETURN NEXT;
            END IF;
        ELSIF (v_entry.key = '$in' AND p_negated) OR (v_entry.key = '$nin' AND NOT p_negated) THEN
            RETURN QUERY SELECT p_field, v_entry.key, x.value
                           FROM jsonb_array_elements(v_entry.value) x
                          WHERE jsonb_typeof(x.value) <> 'null';
        END IF;
    END LOOP;
END
$$;
