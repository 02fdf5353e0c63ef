CREATE OR REPLACE FUNCTION pgjobs._require_scope(p_target regclass, p_scope text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Tenancy: when the session setting pgjobs.allowed_scopes is set (a
-- comma-separated list; unset or empty means no restriction), a client
-- function may only act on those scopes. Called by every submit (through
-- pgjobs._insert_job), by cancel with the job's scope, and by the read path
-- (mask, visible, visible_count). Scopes compare canonicalised with the
-- target's scope type (pgjobs._scope_allowed). Raises 42501 with a hint.
-- Locks nothing.
BEGIN
    IF NOT pgjobs._scope_allowed(p_target, p_scope) THEN
        RAISE EXCEPTION 'permission denied: scope % is not in pgjobs.allowed_scopes',
            coalesce(quote_literal(left(p_scope, 200)), 'NULL')
            USING ERRCODE = '42501',
            HINT = 'This session may only act on the scopes listed in the pgjobs.allowed_scopes '
                   'setting, which the application sets per request.';
    END IF;
END
$$;
