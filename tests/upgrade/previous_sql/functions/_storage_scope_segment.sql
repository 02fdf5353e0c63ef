CREATE OR REPLACE FUNCTION pgjobs._storage_scope_segment(p_scope text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The path segment that stands for the scope p_scope (its canonical text,
-- pgjobs._canonical_scope, as pgjobs.jobs.scope stores it) in a per-tenant
-- storage prefix (`{scope}`, pgjobs._storage_prefix_for): the text itself
-- when it is a safe segment, so that the expansion is one-to-one and cannot
-- leave its folder (letters, digits, '_', '-', '.', not starting with '.',
-- 1 to 255 characters: no '/', no '..', nothing a store would escape or
-- normalise); NULL otherwise, and then a per-tenant prefix allows nothing
-- for that scope. Locks nothing.
BEGIN
    IF p_scope ~ '^[A-Za-z0-9_-][A-Za-z0-9._-]*$' AND length(p_scope) <= 255 THEN
        RETURN p_scope;
    END IF;
    RETURN NULL;
END
$function$;
