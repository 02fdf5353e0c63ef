CREATE OR REPLACE FUNCTION pgjobs._import_input(
    p_text text,
    p_type regtype,
    p_array boolean,
    p_column text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- p_text, once read by the input of type p_type (a type that is no domain
-- and no array; with p_array, p_text is an array of them: '{"a=>1"}'), for
-- the caller to cast to the column's type (a domain's checks, a length).
-- A value that input refuses is one bad record, whatever error it raises:
-- raised again with 'column "c": ' and the input's message, under its own
-- SQLSTATE when that is a data exception or a constraint's (classes 22, 23),
-- else 22P02, which pgjobs.import_batch rejects with its line as it rejects
-- a bad integer. hstore's input raised XX000, ltree's 42601: such a value
-- failed the whole job. The input is reached through array_in, whatever
-- the type (a composite too): a one-element array's quoted element is the
-- text exactly. Called only for types pgjobs._import_input_guarded names
-- (a subtransaction per value, and the settings every pgjobs function
-- pins, tests/test_trust_settings.py: a save and restore each). Errors
-- that are not the value's go through as they are
-- (pgjobs._import_input_refusal: the server's, and those raised inside a
-- function a composite field's domain CHECK calls). Locks nothing.
DECLARE
    v_state text;
    v_message text;
    v_context text;
    v_hint text;
BEGIN
    IF p_text IS NOT NULL THEN
        PERFORM pg_catalog.array_in(
            (CASE WHEN p_array THEN p_text
                  ELSE '{"' || replace(replace(p_text, E'\\', E'\\\\'), '"', E'\\"') || '"}'
             END)::pg_catalog.cstring, p_type, -1);
    END IF;
    RETURN p_text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_context = PG_EXCEPTION_CONTEXT;
    -- The value's refusal raised as one bad record (the one handler of both
    -- reads); any other error again, as it was. A name an oid-alias type's
    -- input found no object for says what every entry point says
    -- (pgjobs._oid_alias_hint), in the reason itself: a reject keeps no hint.
    v_hint := pgjobs._oid_alias_hint(p_type, v_state);
    PERFORM pgjobs._import_input_refused(
        v_state, v_message || coalesce(': ' || v_hint, ''), v_context, '_import_input', p_column,
        coalesce(v_hint, format('The value does not read as type %s%s: write it as that '
                                'type''s text.', p_type, CASE WHEN p_array THEN '[]' ELSE '' END)));
    RAISE;
END
$$;

COMMENT ON FUNCTION pgjobs._import_input(text, regtype, boolean, text) IS
'An import''s text of a value, checked to read as type p_type (an array of it when p_array); '
'refused with any error, it is raised as 22P02 naming the column (one bad record).';
