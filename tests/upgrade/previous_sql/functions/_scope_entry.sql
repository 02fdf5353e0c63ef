CREATE OR REPLACE FUNCTION pgjobs._scope_entry(p_reg pgjobs.target_registry, p_entry text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The canonical scope (pgjobs._canonical_scope) of an entry of
-- pgjobs.allowed_scopes (or of the scope compared with them) for
-- registered target p_reg, or NULL when it is not a value of the scope
-- column: such an entry allows nothing there, and is no error (the setting
-- lists scopes of many targets). Parsed in the
-- caller's session, as pgjobs._canonical_scope; an entry whose tenant
-- depends on the session (pgjobs._scope_entry_fixed) is NULL. The caller has checked
-- that casting is safe (pgjobs._untrusted_roles). A registration whose
-- scope column is gone (its table dropped, the column renamed or dropped)
-- has no values either: NULL, not 42703, or one dropped target would fail
-- every read of pgjobs.jobs by a session with pgjobs.allowed_scopes set
-- (policy jobs_client_read asks pgjobs._allowed_scope_keys). Locks nothing.
BEGIN
    IF NOT pgjobs._scope_entry_fixed(p_reg, p_entry) THEN
        RETURN NULL;  -- its tenant depends on the session's TimeZone or DateStyle
    END IF;
    RETURN pgjobs._canonical_scope(p_reg, p_entry);
EXCEPTION WHEN invalid_parameter_value OR undefined_column THEN
    RETURN NULL;
END
$$;
