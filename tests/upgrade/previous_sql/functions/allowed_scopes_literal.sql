CREATE OR REPLACE FUNCTION pgjobs.allowed_scopes_literal(p_scopes text[])
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A value for pgjobs.allowed_scopes that allows exactly p_scopes, whatever
-- they contain: every scope in double quotes, a '"' in it doubled, so that
-- pgjobs._allowed_scopes_parse reads each back as one entry (a tenant named
-- 'x,acme' does not allow 'acme'). An application builds the setting with
-- it instead of joining raw values with commas. NULL, an empty array or a
-- NULL element raise 22023: an empty setting means no restriction at all,
-- the opposite of what an empty list of scopes asks for. Locks nothing.
BEGIN
    IF p_scopes IS NULL OR cardinality(p_scopes) = 0 THEN
        RAISE EXCEPTION 'allowed_scopes_literal needs at least one scope'
            USING ERRCODE = '22023',
            HINT = 'An empty pgjobs.allowed_scopes means no restriction; a request that may act '
                   'on no scope should not call pgjobs at all.';
    END IF;
    IF array_position(p_scopes, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'allowed_scopes_literal: scope % is NULL', array_position(p_scopes, NULL)
            USING ERRCODE = '22023', HINT = 'A NULL scope cannot be allowed; leave it out.';
    END IF;
    RETURN (SELECT string_agg('"' || replace(s.scope, '"', '""') || '"', ',' ORDER BY s.n)
              FROM unnest(p_scopes) WITH ORDINALITY AS s(scope, n));
END
$$;

COMMENT ON FUNCTION pgjobs.allowed_scopes_literal(text[]) IS
'A value for the pgjobs.allowed_scopes setting that allows exactly the given scopes, each one '
'quoted ("x,acme" is one scope, not x and acme; a " inside is doubled). Use it instead of joining '
'raw values with commas: SELECT set_config(''pgjobs.allowed_scopes'', '
'pgjobs.allowed_scopes_literal(ARRAY[$1]), true). An empty array or a NULL scope raises 22023 '
'(an empty setting would mean no restriction).';
