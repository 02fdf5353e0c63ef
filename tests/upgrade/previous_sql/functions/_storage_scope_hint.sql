CREATE OR REPLACE FUNCTION pgjobs._storage_scope_hint(p_scope text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The end of the hint of a submit whose destination or source is not
-- allowed, for a job of scope p_scope (canonical text; NULL: not a value of
-- the scope column, nothing to add): which folder a per-tenant prefix
-- (`{scope}`, pgjobs._storage_prefix_for) allows it, or that it allows
-- none because the scope's text is not a safe path segment. Says nothing
-- about which prefixes the allow-list holds. Locks nothing.
BEGIN
    IF p_scope IS NULL THEN
        RETURN '';
    ELSIF pgjobs._storage_scope_segment(p_scope) IS NULL THEN
        RETURN format(' Scope %s is not a safe path segment (letters, digits, "_", "-", "." and '
                      'not starting with "."), so no per-tenant prefix (one with {scope}) allows '
                      'anything for it.', quote_literal(regexp_replace(left(p_scope, 200), '[[:cntrl:]]', '?', 'g')));
    END IF;
    RETURN format(' A per-tenant prefix (one with {scope}) allows this job only its own folder, '
                  'named %s.', quote_literal(p_scope));
END
$function$;
