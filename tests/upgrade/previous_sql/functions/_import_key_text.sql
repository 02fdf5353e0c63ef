CREATE OR REPLACE FUNCTION pgjobs._import_key_text(p_value text, p_type text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one text (pgjobs._canonical_text) of the value p_value spells in
-- type p_type (a key column's type, pgjobs._column_type), so that two
-- spellings of one key ('2024-01-01T00:00:00Z' and '2024-01-01 01:00:00+01'
-- for a timestamptz, '1e3' and '1000' for a numeric, '24:00:00' and '1 day'
-- for an interval) read as one key; NULL when p_value is not a value of
-- p_type (the record is refused when it goes in). pgjobs.import_batch tells
-- by it which records of a JSONL batch name the same key. Locks nothing.
DECLARE
    v_text text;
    v_state text;
BEGIN
    IF p_value IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT pgjobs._canonical_text(%L::%s)', p_value, p_type) INTO v_text;
    RETURN v_text;
EXCEPTION WHEN OTHERS THEN
    -- Not a value of the type: its own key, refused as it goes in. Whatever
    -- the type's input raised: an ltree key's syntax error (42601) failed
    -- the whole job here (pgjobs._import_input). Errors of the server, not
    -- of the value, go through.
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
    IF left(v_state, 2) IN ('08', '40', '53', '57', '58') OR v_state IN ('XX001', 'XX002') THEN
        RAISE;
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._import_key_text(text, text) IS
'The canonical text of the key value p_value spells in type p_type (NULL: not a value of it); '
'tells records of one key apart from others in a JSONL import batch.';
