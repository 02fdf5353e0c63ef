CREATE OR REPLACE FUNCTION pgjobs._option_bool(p_name text, p_value jsonb)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A boolean option of a job (gzip, allow_unknown_fields), or 22023 naming
-- the option: JSON true or false only, not "true" or 1. NULL (the option
-- absent) is NULL. The one check of every entry point's boolean options,
-- as pgjobs._option_int is of their integers. Locks nothing.
BEGIN
    IF p_value IS NOT NULL AND jsonb_typeof(p_value) <> 'boolean' THEN
        RAISE EXCEPTION 'option "%" must be a boolean, not %', p_name, p_value
            USING ERRCODE = '22023', HINT = format('For example {"%s": true}.', p_name);
    END IF;
    RETURN (p_value #>> '{}')::boolean;
END
$$;
