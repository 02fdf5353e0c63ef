CREATE OR REPLACE FUNCTION pgjobs._import_json_input(
    p_value text,
    p_type text,
    p_column text,
    p_exact boolean)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A JSON array or object (p_value, its text; read as json when p_exact,
-- the line's own spelling, else as jsonb) read as type p_type (the
-- column's full type) by PostgreSQL's json(b)_to_record, as
-- pgjobs._import_insert_sql reads arrays and composites, for a type that
-- holds one whose input may raise outside class 22
-- (pgjobs._import_input_guarded: an hstore[], a composite with an ltree
-- field). Returns the value's PostgreSQL text, which the caller casts to
-- p_type; an error of the value, whatever its code, is 22P02 naming
-- column p_column (as pgjobs._import_input does; a class 22 or 23 code
-- kept, a domain CHECK's 23514): one bad record, not a failed job. Errors
-- that are not the value's go through as they are
-- (pgjobs._import_input_refusal: the server's, and those raised inside a
-- function a domain CHECK calls). The statement is built per call (EXECUTE): only such columns pay
-- it. Locks nothing.
DECLARE
    v_text text;
    v_state text;
    v_message text;
    v_context text;
    v_hint text;
BEGIN
    EXECUTE format('SELECT p.v::pg_catalog.text FROM pg_catalog.%1$s_to_record('
                   'pg_catalog.%1$s_build_object(''v'', $1::pg_catalog.%1$s)) AS p (v %2$s)',
                   CASE WHEN p_exact THEN 'json' ELSE 'jsonb' END, p_type)
       INTO v_text USING p_value;
    RETURN v_text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                            v_context = PG_EXCEPTION_CONTEXT;
    -- The value's refusal raised as one bad record (the one handler of both
    -- reads); any other error again, as it was. A name an oid-alias type's
    -- input found no object for (an array of them) says what every entry
    -- point says (pgjobs._oid_alias_hint), in the reason: a reject keeps no hint.
    v_hint := pgjobs._oid_alias_hint(p_type::regtype, v_state);
    PERFORM pgjobs._import_input_refused(
        v_state, v_message || coalesce(': ' || v_hint, ''), v_context, '_import_json_input',
        p_column, coalesce(v_hint, format('The value does not read as type %s: write it as '
                                          'that type''s JSON, or as its text in a JSON string.',
                                          p_type)));
    RAISE;
END
$$;

COMMENT ON FUNCTION pgjobs._import_json_input(text, text, text, boolean) IS
'An import''s JSON array or object read as the column''s type by json(b)_to_record, returned as '
'its text; a value refused with any error is raised as 22P02 naming the column (one bad record).';
