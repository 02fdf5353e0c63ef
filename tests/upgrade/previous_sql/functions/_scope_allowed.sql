CREATE OR REPLACE FUNCTION pgjobs._scope_allowed(p_target regclass, p_scope text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Tenancy: whether this session may act on scope p_scope of p_target. True
-- when the session setting pgjobs.allowed_scopes (a comma-separated list)
-- is unset or empty; otherwise when p_scope is one of its entries, compared
-- as canonical scopes of p_target (pgjobs._canonical_scope: '01' allowed
-- allows '1'; an entry that is not a value of the scope column allows
-- nothing). For a table that is not registered (jobs of custom kinds) the
-- entries and the scope compare as trimmed text. A NULL or invalid scope is
-- not allowed. Never raises for a bad value. SECURITY DEFINER: policy
-- jobs_client_read on pgjobs.jobs (migration 0006) calls it as the client,
-- which may not read pgjobs.target_registry; an untrusted target's scopes
-- compare as text only. Locks nothing.
DECLARE
    v_entries text[] := pgjobs._allowed_scope_entries();
    v_reg pgjobs.target_registry;
    v_scope text;
    v_entry text;
BEGIN
    IF v_entries IS NULL THEN
        RETURN true;
    ELSIF p_scope IS NULL THEN
        RETURN false;
    END IF;
    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_target;
    IF NOT FOUND THEN
        RETURN p_scope = ANY (v_entries);
    END IF;
    -- Same text, same canonical scope: unless the text names a tenant only
    -- in this session's TimeZone or DateStyle (pgjobs._scope_entry_fixed),
    -- when the entry allows nothing.
    IF p_scope = ANY (v_entries) THEN
        RETURN pgjobs._scope_entry_fixed(v_reg, p_scope);
    END IF;
    -- Casting runs the scope type's code (a domain's CHECK) as this
    -- function's owner: only for a trusted target (pgjobs._reach_roles'
    -- rule, as pgjobs._untrusted_roles reports it).
    IF EXISTS (SELECT 1 FROM pgjobs._reach_roles(p_target) r WHERE r.lacks_rights) THEN
        RETURN false;
    END IF;
    v_scope := pgjobs._scope_entry(v_reg, p_scope);
    IF v_scope IS NULL THEN
        RETURN false;  -- not a value of the scope column
    END IF;
    FOREACH v_entry IN ARRAY v_entries LOOP
        IF pgjobs._scope_entry(v_reg, v_entry) = v_scope THEN  -- NULL: allows nothing
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;
