CREATE OR REPLACE FUNCTION pgjobs._clipped(p_text text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What a refusal quotes of one input or one value read from the rows (an
-- exclude key, a scope, a document field's name, a filter's path): its
-- first 64 characters, then "..." when there were more. The one cap of
-- the guards' messages (pgjobs._require_known_keys, pgjobs._judge_fields,
-- pgjobs._field_guess, pgjobs._require_value_types), so that a message
-- stays short whatever was written: ten keys of 100,000 characters made a
-- message of a megabyte, which every log line and client repeated. NULL
-- stays NULL. Locks nothing.
BEGIN
    RETURN CASE WHEN char_length(p_text) > 64 THEN left(p_text, 64) || '...' ELSE p_text END;
END
$$;
