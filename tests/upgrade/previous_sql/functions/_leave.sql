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
-- set for the call (pgjobs.call_<depth>, found by pgjobs._entered: the
-- innermost running call, which is the internal returning, since its
-- result was computed before this runs) and, after a submit, the setting
-- pgjobs.compiled_columns (pgjobs._compiling_against), so that neither
-- outlives the call: no later code of the transaction, or of the session
-- when the call ran outside a transaction block, sees the role the call
-- acted for. The settings are transaction-local: a call that fails
-- instead is undone with its (sub)transaction. Returns p_value.
-- Locks nothing.
DECLARE
    v_call text[] := pgjobs._entered();
BEGIN
    IF v_call IS NOT NULL THEN
        PERFORM set_config('pgjobs.call_' || v_call[3], '', true);
        IF starts_with(v_call[1], 'submit') THEN
            PERFORM set_config('pgjobs.compiled_columns', '', true);
        END IF;
    END IF;
    RETURN p_value;
END
$$;

COMMENT ON FUNCTION pgjobs._leave(anyelement) IS
'Internal: returns its argument after clearing the settings pgjobs._enter (and '
'pgjobs._compiling_against) set for the client call now returning.';
