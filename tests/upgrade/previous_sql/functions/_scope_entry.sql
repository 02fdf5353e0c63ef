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
-- caller's session, as pgjobs._canonical_scope. The caller has checked
-- that casting is safe (pgjobs._untrusted_roles). Locks nothing.
BEGIN
    RETURN pgjobs._canonical_scope(p_reg, p_entry);
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN NULL;
END
$$;
