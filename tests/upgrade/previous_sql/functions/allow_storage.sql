CREATE OR REPLACE FUNCTION pgjobs.allow_storage(p_prefix text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- Adds p_prefix, normalised (pgjobs._normalize_uri: 22023 if refused), to
-- the storage allow-list: clients may then name it, or anything below it on
-- a path-segment boundary, as an export destination or import source. A
-- prefix may hold `{scope}` once, as one whole path segment: for a job of
-- scope S it then allows only that prefix with S's canonical text in place
-- of the segment (pgjobs._storage_prefix_for); `{scope}` anywhere else, or
-- twice, is refused (22023). Administrators only (not granted to
-- pgjobs_client). Idempotent. Locks the allow-list row.
DECLARE
    v_prefix text := pgjobs._normalize_uri(p_prefix);
BEGIN
    -- 'x' stands for any safe scope: NULL means the placeholder is misplaced.
    IF pgjobs._storage_prefix_for(v_prefix, 'x') IS NULL THEN
        RAISE EXCEPTION 'storage prefix % holds {scope} other than once as a whole path segment',
                        quote_literal(v_prefix)
            USING ERRCODE = '22023',
                  HINT = 'Write the placeholder once, as a folder of its own, e.g. '
                         '''s3://bucket/tenants/{scope}'' or ''file:///srv/imports/{scope}/in''.';
    END IF;
    INSERT INTO pgjobs.storage_allow (prefix)
    VALUES (v_prefix)
    ON CONFLICT (prefix) DO NOTHING;
END
$function$;

COMMENT ON FUNCTION pgjobs.allow_storage(text) IS
'Administrators only: allow clients to name this storage prefix (or anything below it, on a '
'path-segment boundary) as an export destination or import source. The prefix is normalised; '
'dot segments, %-escapes and relative file paths are refused (22023). A per-tenant prefix '
'holds {scope} as one whole path segment (s3://bucket/tenants/{scope}): a job of scope S may '
'then use only that prefix with S''s canonical text in its place, and nothing if that text is '
'not a safe path segment (letters, digits, _ - ., not starting with a dot); {scope} inside a '
'segment or twice is refused (22023). A prefix without {scope} is shared by every tenant. '
'Idempotent.';
