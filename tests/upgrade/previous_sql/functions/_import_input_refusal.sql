CREATE OR REPLACE FUNCTION pgjobs._import_input_refusal(
    p_state text,
    p_context text,
    p_function text)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether an error caught while pgjobs._import_input or
-- pgjobs._import_json_input (p_function, its name without schema) read one
-- value (SQLSTATE p_state, PG_EXCEPTION_CONTEXT p_context) is the value's
-- refusal, one bad record, rather than an error the job must fail with.
-- The value's: a data exception or a constraint's (classes 22 and 23, as
-- pgjobs.import_batch rejects them from a plain cast), and whatever else
-- the type's input itself raised (hstore XX000, ltree 42601, regclass
-- 42P01). Not the value's, so false: errors of the server (08, 40, 53, 57,
-- 58, XX001, XX002), a lock not granted or an object in use (55: a lock
-- timeout), a transaction's state (25), and any error raised inside a
-- function that reading the value called, such as one a composite field's
-- domain CHECK calls (its frame stands inside p_function's in the
-- context): its lack of a privilege, its lock timeout or its own RAISE
-- says nothing of the value, and a plain cast failed the job with it.
-- Locks nothing.
DECLARE
    v_lines text[] := string_to_array(coalesce(p_context, ''), E'\n');
    v_line text;
BEGIN
    IF left(p_state, 2) IN ('22', '23') THEN
        RETURN true;
    END IF;
    IF left(p_state, 2) IN ('08', '25', '40', '53', '55', '57', '58')
       OR p_state IN ('XX001', 'XX002') THEN
        RETURN false;
    END IF;
    -- Innermost frame first: a function's frame before p_function's ran
    -- inside it (the name is qualified unless its schema is on the path).
    FOREACH v_line IN ARRAY v_lines LOOP
        IF v_line ~ ('^PL/pgSQL function (pgjobs\.)?' || p_function || '\(') THEN
            RETURN true;
        END IF;
        IF v_line ~ '^(PL/\S+|SQL) function ' THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN false;  -- (p_function's frame not found: not known to be the value's)
END
$$;

COMMENT ON FUNCTION pgjobs._import_input_refusal(text, text, text) IS
'Whether an error caught reading an import''s value (its SQLSTATE and context) is the value''s '
'refusal (one bad record), not the server''s or that of a function a domain CHECK calls.';
