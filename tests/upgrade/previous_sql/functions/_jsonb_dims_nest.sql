CREATE OR REPLACE FUNCTION pgjobs._jsonb_dims_nest(p_flat jsonb[], p_dims integer[])
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The elements p_flat of an array (storage order, NULL for an SQL NULL
-- element) nested into the lengths p_dims of its dimensions, as to_jsonb
-- nests an array: [] for no dimension (an empty array), a JSON null for a
-- NULL element. For pgjobs._json_value_jsonb. Locks nothing.
DECLARE
    v_step integer;
    v_out jsonb := '[]'::jsonb;
BEGIN
    IF coalesce(cardinality(p_dims), 0) = 0 THEN
        RETURN '[]'::jsonb;
    END IF;
    IF cardinality(p_dims) = 1 THEN
        RETURN (SELECT coalesce(jsonb_agg(coalesce(e, 'null'::jsonb) ORDER BY o), '[]'::jsonb)
                  FROM unnest(p_flat) WITH ORDINALITY u(e, o));
    END IF;
    v_step := cardinality(p_flat) / p_dims[1];
    FOR i IN 0 .. p_dims[1] - 1 LOOP
        v_out := v_out || jsonb_build_array(
            pgjobs._jsonb_dims_nest(p_flat[i * v_step + 1 : (i + 1) * v_step], p_dims[2:]));
    END LOOP;
    RETURN v_out;
END
$$;

COMMENT ON FUNCTION pgjobs._jsonb_dims_nest(jsonb[], integer[]) IS
'An array''s elements (storage order) nested into its dimensions as to_jsonb nests them.';
