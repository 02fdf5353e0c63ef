CREATE OR REPLACE FUNCTION pgjobs._leave(p_value anyelement)
RETURNS anyelement
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The last call of every SECURITY DEFINER internal pgjobs._<entry>_as:
-- RETURN pgjobs._leave(<its result>). Clears the setting pgjobs._enter
-- set for the call (pgjobs.call_<depth>) and, after a submit, the setting
-- pgjobs.compiled_columns (pgjobs._compiling_against), so that neither
-- outlives the call: no later code of the transaction, or of the session
-- when the call ran outside a transaction block, sees the role the call
-- acted for. The settings are transaction-local: a call that fails
-- instead is undone with its (sub)transaction. Returns p_value.
-- The call returning is the frame right below this one when the body
-- calls this in a plain expression (PG_CONTEXT line 2, in the language of
-- lc_messages: its line starts as line 1 does, up to the name): its depth
-- is the number of lines below this one, as pgjobs._enter counted it. No
-- seal to check: clearing a slot acts for no one, and the frame on line 2
-- is real (line 1 is this function's own, all fixed text). Otherwise (a
-- result computed in an SQL statement, a language that prints the line
-- number first) pgjobs._entered finds it. One call-stack read fewer in
-- every client call (issue 11). Locks nothing.
DECLARE
    v_ctx text;
    v_lines text[];
    v_at integer;
    v_body text;
    v_depth integer;
    v_call text[];
BEGIN
    GET DIAGNOSTICS v_ctx = PG_CONTEXT;
    v_lines := string_to_array(v_ctx, E'\n');
    v_at := strpos(v_lines[1], 'pgjobs._leave(');
    IF v_at > 1 AND left(v_lines[1], v_at - 1) !~ '[0-9]'
       AND starts_with(v_lines[2], left(v_lines[1], v_at - 1)) THEN
        v_body := substring(substr(v_lines[2], v_at) FROM '^pgjobs\._([a-z_]+)_as\(');
    END IF;
    IF v_body IS NOT NULL THEN
        v_depth := cardinality(v_lines) - 1;
    ELSE
        v_call := pgjobs._entered();
        v_depth := v_call[3]::integer;
        v_body := ltrim(v_call[1], '_');
    END IF;
    IF v_depth IS NOT NULL THEN
        PERFORM set_config('pgjobs.call_' || v_depth, '', true);
        IF starts_with(v_body, 'submit') THEN
            PERFORM set_config('pgjobs.compiled_columns', '', true);
        END IF;
    END IF;
    RETURN p_value;
END
$$;

COMMENT ON FUNCTION pgjobs._leave(anyelement) IS
'Internal: returns its argument after clearing the settings pgjobs._enter (and '
'pgjobs._compiling_against) set for the client call now returning.';
