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
-- Written as an integer: 5.0 (json.dumps of a Python float) is refused
-- here too, not let through to fail as 22P02 (no hint) at the cast below or
-- in whatever later reads the stored option as ::integer (a job's pages,
-- the export's payload, the worker). (1e2 is stored by jsonb as 100.)
-- Locks nothing.
BEGIN
    IF jsonb_typeof(p_value) IS DISTINCT FROM 'number'
       OR p_value::text !~ '^-?[0-9]+$'
       OR (p_value::text)::numeric NOT BETWEEN p_min AND p_max THEN
        RAISE EXCEPTION 'option "%" must be an integer from % to %, not %',
            p_name, p_min, p_max, p_value
            USING ERRCODE = '22023',
            HINT = format('For example {"%s": %s}%s.', p_name, p_min,
                          CASE WHEN jsonb_typeof(p_value) = 'number'
                               THEN ' (a whole number without a decimal point)' ELSE '' END);
    END IF;
    RETURN (p_value::text)::integer;
END
$$;
