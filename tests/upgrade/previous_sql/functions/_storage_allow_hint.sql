CREATE OR REPLACE FUNCTION pgjobs._storage_allow_hint(p_uri text, p_object boolean)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The one sentence of a hint that tells an administrator which
-- pgjobs.allow_storage call admits p_uri (normal form, pgjobs._normalize_uri)
-- for every scope: an export's destination as itself (p_object false, a
-- prefix), an import's source by its folder (p_object true). The argument
-- is one pgjobs.allow_storage accepts and stores as a prefix that covers
-- p_uri: a root folder's normal form ('file://') is not itself accepted,
-- so it is spelled 'file:///'; a folder whose path holds '{scope}' (which
-- allow_storage reads as the per-tenant placeholder, never literally) is
-- replaced by the nearest folder above it without one. The result is
-- checked by normalising it again; if no call can admit p_uri the sentence
-- says so instead of naming one. Locks nothing.
DECLARE
    v_base   text := substring(p_uri FROM '^[a-z0-9]+://[^/]*');
    v_folder text := p_uri;
    v_arg    text;
    v_why    text := '';
BEGIN
    IF p_object AND length(p_uri) > length(v_base) THEN
        v_folder := regexp_replace(p_uri, '/[^/]*$', '');
    END IF;
    IF strpos(v_folder, '{scope}') > 0 THEN
        WHILE strpos(v_folder, '{scope}') > 0 AND length(v_folder) > length(v_base) LOOP
            v_folder := regexp_replace(v_folder, '/[^/]*$', '');
        END LOOP;
        v_why := ' ({scope} in a prefix is the per-tenant placeholder, never a literal folder '
                 'name, so this is the nearest folder above it)';
    END IF;
    v_arg := CASE WHEN v_folder = v_base AND v_base = 'file://' THEN 'file:///' ELSE v_folder END;
    -- The call must be one allow_storage takes, store v_folder, and admit
    -- p_uri: the root folder of a file system ('file://') is a prefix of
    -- everything below it but never itself a place (pgjobs._normalize_uri
    -- refuses it, so pgjobs._storage_admitting admits it under no prefix,
    -- and the worker has no folder to write in).
    BEGIN
        IF pgjobs._normalize_uri(p_uri) IS DISTINCT FROM p_uri
           OR pgjobs._normalize_uri(v_arg) IS DISTINCT FROM v_folder
           OR strpos(v_folder, '{scope}') > 0 THEN
            v_arg := NULL;
        END IF;
    EXCEPTION WHEN invalid_parameter_value THEN
        v_arg := NULL;
    END;
    IF v_arg IS NULL THEN
        RETURN format('No pgjobs.allow_storage call can allow %s%s: choose a folder below it '
                      '(e.g. file:///srv/exports or s3://bucket/exports) and allow that.',
                      quote_literal(p_uri),
                      CASE WHEN p_uri = 'file://' THEN ', the root of the worker''s file system'
                           ELSE '' END);
    END IF;
    IF v_folder = v_base THEN
        v_why := v_why || format(', which allows %s: better %s and allow that',
                                 CASE WHEN v_base = 'file://' THEN 'every file on the worker''s '
                                                                  'host'
                                      ELSE 'all of ' || quote_literal(v_base) END,
                                 CASE WHEN p_object THEN 'move the file into a folder of its own'
                                      ELSE 'choose a folder below it' END);
    END IF;
    RETURN format('An administrator allows %s, for every scope, with '
                  'pgjobs.allow_storage(%s)%s.',
                  CASE WHEN p_object THEN 'its folder' ELSE 'it' END,
                  quote_literal(v_arg), v_why);
END
$function$;
