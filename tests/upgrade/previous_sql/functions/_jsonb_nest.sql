CREATE OR REPLACE FUNCTION pgjobs._jsonb_nest(p_path text[], p_value jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- {"a": {"b": value}} for path {a,b}: the patch that sets one nested field.
DECLARE
    v_result jsonb := p_value;
BEGIN
    FOR v_i IN REVERSE cardinality(p_path) .. 1 LOOP
        v_result := jsonb_build_object(p_path[v_i], v_result);
    END LOOP;
    RETURN v_result;
END
$$;
