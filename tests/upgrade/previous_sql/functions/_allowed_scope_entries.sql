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
-- The entries of the session setting pgjobs.allowed_scopes (a
-- comma-separated list; blanks around entries dropped), as written: the one
-- parse of the setting for pgjobs._scope_allowed and
-- pgjobs._allowed_scope_keys. NULL when it is unset or empty (every scope
-- allowed). Entries are compared canonically by the callers
-- (pgjobs._scope_entry). Locks nothing.
DECLARE
    v_setting text := btrim(coalesce(current_setting('pgjobs.allowed_scopes', true), ''));
BEGIN
    IF v_setting = '' THEN
        RETURN NULL;
    END IF;
    RETURN regexp_split_to_array(v_setting, '\s*,\s*');
END
$$;
