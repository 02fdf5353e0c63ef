CREATE OR REPLACE FUNCTION pgjobs._risky_comparisons(
    p_filter  jsonb,
    p_columns jsonb,
    p_negated boolean DEFAULT false,
    p_field   text DEFAULT NULL)
RETURNS TABLE (path text, json_type text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The comparisons of a filter (already compiled: pgjobs._compile_filter
-- has checked its shape) on document paths that match every row whose
-- value at the path is of another JSON type than the operand's: $ne and
-- $nin, and $eq, $in, ranges and $contains under a $not (a field's or a
-- filter's; two cancel). {"amount": {"$ne": "3"}} on numbers excludes no
-- row that has the field, as a misspelt field excludes none. One row per
-- (path, operand type): string, number, boolean, object or array (null
-- operands test presence, not a type). p_columns: the target's columns (a
-- key naming one is a column, never a path, as the compiler resolves it).
-- p_field: the field whose condition p_filter is (NULL: p_filter is a
-- filter object). The walk is pgjobs._risky_operands' (this keeps its
-- earlier signature); pgjobs._require_value_types judges them. Locks nothing.
BEGIN
    RETURN QUERY SELECT DISTINCT r.path, jsonb_typeof(r.operand)
                   FROM pgjobs._risky_operands(p_filter, p_columns, p_negated, p_field) r;
END
$$;
