CREATE OR REPLACE FUNCTION pgjobs._storage_prefix_for(p_prefix text, p_scope text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- What the allow-list prefix p_prefix (normal form) allows for a job of
-- scope p_scope (canonical text, or NULL when there is no job scope):
-- p_prefix itself when it holds no `{scope}` (a prefix every tenant
-- shares); when `{scope}` is exactly one whole path segment of it, p_prefix
-- with that segment replaced by the scope's safe segment
-- (pgjobs._storage_scope_segment); NULL, allowing nothing, when the scope
-- is NULL or not a safe segment, or when `{scope}` appears otherwise
-- (pgjobs.allow_storage refuses such a prefix; a row written some other
-- way fails closed). The placeholder means something only here, in the
-- stored prefix: a client's URI is compared literally. Locks nothing.
DECLARE
    v_segment text;
BEGIN
    IF strpos(p_prefix, '{scope}') = 0 THEN
        RETURN p_prefix;
    END IF;
    -- Exactly once, and as a whole segment after the scheme's '://'.
    IF length(p_prefix) - length(replace(p_prefix, '{scope}', '')) <> length('{scope}')
       OR strpos(p_prefix || '/', '/{scope}/') = 0
       OR strpos(p_prefix, '://{scope}') > 0 THEN
        RETURN NULL;
    END IF;
    v_segment := pgjobs._storage_scope_segment(p_scope);
    IF v_segment IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN replace(p_prefix, '{scope}', v_segment);
END
$function$;
