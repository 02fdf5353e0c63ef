CREATE OR REPLACE FUNCTION pgjobs._require_scope(p_target regclass, p_scope text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Tenancy: when the session setting pgjobs.allowed_scopes is set (a
-- comma-separated list, pgjobs._allowed_scopes_parse; unset or empty means
-- no restriction, malformed allows nothing and is reported), a client
-- function may only act on those scopes. Called by every submit (through
-- pgjobs._insert_job), by cancel with the job's scope, and by the read path
-- (mask, visible, visible_count). Scopes compare canonicalised with the
-- target's scope type (pgjobs._scope_allowed). Raises 42501 with a hint.
-- Locks nothing.
DECLARE
    v_problem text;
BEGIN
    IF NOT pgjobs._scope_allowed(p_target, p_scope) THEN
        -- A malformed list allows nothing (pgjobs._allowed_scopes_parse):
        -- say so, rather than blame the scope.
        v_problem := (pgjobs._allowed_scopes_parse(
            current_setting('pgjobs.allowed_scopes', true))).problem;
        IF v_problem IS NOT NULL THEN
            RAISE EXCEPTION 'permission denied: pgjobs.allowed_scopes is malformed (%), so it allows no scope',
                v_problem
                USING ERRCODE = '42501',
                HINT = 'Entries are separated by commas; an entry in double quotes is taken '
                       'literally (commas and spaces in it kept, "" for a quote), and nothing but '
                       'blanks may follow its closing quote. Build the list with '
                       'pgjobs.allowed_scopes_literal(ARRAY[...]).';
        END IF;
        RAISE EXCEPTION 'permission denied: scope % is not in pgjobs.allowed_scopes',
            coalesce(quote_literal(left(p_scope, 200)), 'NULL')
            USING ERRCODE = '42501',
            HINT = 'This session may only act on the scopes listed in the pgjobs.allowed_scopes '
                   'setting, which the application sets per request.';
    END IF;
END
$$;
