CREATE OR REPLACE FUNCTION pgjobs._option_int(p_name text, p_value jsonb, p_min bigint,
                                              p_max bigint)
RETURNS integer
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- An integer option, or 22023 naming the option and its valid range.
BEGIN
    IF jsonb_typeof(p_value) IS DISTINCT FROM 'number'
       OR (p_value::text)::numeric <> trunc((p_value::text)::numeric)
       OR (p_value::text)::numeric NOT BETWEEN p_min AND p_max THEN
        RAISE EXCEPTION 'option "%" must be an integer from % to %, not %',
            p_name, p_min, p_max, p_value
            USING ERRCODE = '22023', HINT = format('For example {"%s": %s}.', p_name, p_min);
    END IF;
    RETURN (p_value::text)::integer;
END
$$;
