CREATE OR REPLACE FUNCTION pgjobs._allowed_scope_entries()
RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The entries of the session setting pgjobs.allowed_scopes, as written
-- (pgjobs._allowed_scopes_parse: a comma-separated list, blanks around
-- entries dropped, an entry in double quotes taken literally): what
-- pgjobs._scope_allowed, pgjobs._allowed_scope_keys and policy
-- jobs_client_read (migration 0034) compare scopes with. NULL when it is
-- unset or empty (every scope allowed); '{}' (nothing allowed) when it is
-- malformed, which pgjobs._require_scope reports. Entries are compared
-- canonically by the callers (pgjobs._scope_entry). Locks nothing.
BEGIN
    RETURN (pgjobs._allowed_scopes_parse(current_setting('pgjobs.allowed_scopes', true))).entries;
END
$$;
