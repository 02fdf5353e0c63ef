CREATE OR REPLACE FUNCTION pgjobs._import_input_refused(
    p_state text,
    p_message text,
    p_context text,
    p_function text,
    p_column text,
    p_hint text)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one exception handler of pgjobs._import_input and
-- pgjobs._import_json_input (p_function, its name without schema), called
-- from theirs with the error caught reading one value of column p_column
-- (SQLSTATE p_state, MESSAGE_TEXT p_message, PG_EXCEPTION_CONTEXT
-- p_context): when it is the value's refusal (pgjobs._import_input_refusal)
-- raises it as one bad record, 'column "c": ' and the input's message,
-- under its own SQLSTATE when that is a data exception or a constraint's
-- (classes 22, 23), else 22P02, with hint p_hint; returns otherwise, and
-- the caller raises the error it caught again, as it was. Locks nothing.
BEGIN
    IF pgjobs._import_input_refusal(p_state, p_context, p_function) THEN
        RAISE EXCEPTION 'column "%": %', p_column, p_message
            USING ERRCODE = CASE WHEN left(p_state, 2) IN ('22', '23') THEN p_state
                                 ELSE '22P02' END,
            HINT = p_hint;
    END IF;
END
$$;

COMMENT ON FUNCTION pgjobs._import_input_refused(text, text, text, text, text, text) IS
'Raises an error caught reading an import''s value as one bad record (column named; 22P02 unless '
'of class 22 or 23) when it is the value''s refusal; returns otherwise, for the caller to re-raise.';
