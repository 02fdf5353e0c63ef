CREATE OR REPLACE FUNCTION pgjobs._normalize_uri(p_uri text, p_errcode text DEFAULT '22023')
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $function$
-- The one normal form of a storage URI (a prefix or an object), which the
-- allow-list stores and compares (pgjobs._storage_allowed): scheme
-- lower-cased, no trailing slash, nothing else rewritten. Anything whose
-- meaning could differ between this check and the worker's filesystem or
-- object store is refused instead of interpreted: `.` and `..` segments,
-- empty segments, %-escapes, `?`, `#`, backslashes, control characters,
-- relative or remote file:// paths (relative to what, on the server?), a
-- bucket that is not a plain name. Raises p_errcode (22023 for an
-- administrator's prefix, 42501 for a client's destination) naming why.
-- Schemes: file, s3, gs, az, memory, https (import sources). Locks nothing.
DECLARE
    v_scheme text;
    v_rest   text;
    v_host   text := '';
    v_path   text;
    v_seg    text;
    v_why    text;
BEGIN
    IF p_uri IS NULL OR p_uri !~ '^[A-Za-z][A-Za-z0-9+.-]*://' THEN
        RAISE EXCEPTION 'storage URI % has no scheme',
                        coalesce(quote_literal(left(regexp_replace(p_uri, '[[:cntrl:]]', '?', 'g'),
                                                    300)), 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'For example "s3://bucket/exports" or "file:///var/exports".';
    END IF;
    v_scheme := lower(split_part(p_uri, '://', 1));
    v_rest := substr(p_uri, length(v_scheme) + 4);
    IF v_scheme NOT IN ('file', 's3', 'gs', 'az', 'memory', 'https') THEN
        RAISE EXCEPTION 'storage URI % has an unsupported scheme %',
                        quote_literal(left(regexp_replace(p_uri, '[[:cntrl:]]', '?', 'g'), 300)),
                        quote_literal(v_scheme)
            USING ERRCODE = '22023',
                  HINT = 'Use file:///dir, s3://bucket/prefix, gs://bucket/prefix, '
                         'az://container/prefix or memory:///prefix.';
    END IF;

    v_why := CASE
        WHEN p_uri ~ '[[:cntrl:]]' THEN 'a control character'
        WHEN strpos(p_uri, chr(92)) > 0 THEN 'a backslash'
        WHEN strpos(p_uri, '%') > 0 THEN 'a %-escape'
        WHEN strpos(p_uri, '?') > 0 OR strpos(p_uri, '#') > 0 THEN 'a query or fragment'
    END;

    IF v_why IS NULL THEN
        IF v_scheme = 'file' THEN
            IF left(v_rest, 10) = 'localhost/' THEN
                v_rest := substr(v_rest, 10);
            END IF;
            IF left(v_rest, 1) <> '/' THEN
                v_why := 'a relative or remote file path';
            END IF;
            v_path := substr(v_rest, 2);
        ELSIF v_scheme = 'memory' THEN
            v_path := ltrim(v_rest, '/');
        ELSE
            v_host := split_part(v_rest, '/', 1);
            v_path := substr(v_rest, length(v_host) + 2);
            IF v_host !~ (CASE v_scheme WHEN 'https'
                              THEN '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$'
                              ELSE '^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$' END)
               OR strpos(v_host, '..') > 0 THEN
                v_why := 'an empty or malformed bucket name';
            ELSIF v_scheme = 'https' THEN
                v_host := lower(v_host);
            END IF;
        END IF;
    END IF;

    IF v_why IS NULL THEN
        -- One trailing slash names the same folder; any other empty segment,
        -- and every dot segment, is refused.
        IF right(v_path, 1) = '/' THEN
            v_path := left(v_path, -1);
        END IF;
        IF v_path <> '' THEN
            FOREACH v_seg IN ARRAY string_to_array(v_path, '/') LOOP
                IF v_seg IN ('', '.', '..') THEN
                    v_why := CASE v_seg WHEN '' THEN 'an empty path segment'
                                        ELSE format('a "%s" path segment', v_seg) END;
                    EXIT;
                END IF;
            END LOOP;
        END IF;
    END IF;

    IF v_why IS NOT NULL THEN
        RAISE EXCEPTION 'storage URI % is refused: it contains %',
                        quote_literal(left(regexp_replace(p_uri, '[[:cntrl:]]', '?', 'g'), 300)),
                        v_why
            USING ERRCODE = p_errcode,
                  -- What to write instead, for the reason found: a missing
                  -- bucket has no dot segment nor escape to take out.
                  HINT = CASE
                      WHEN v_why = 'an empty or malformed bucket name' AND v_scheme = 'https'
                      THEN 'Name the host right after https://, e.g. '
                           '"https://example.com/imports/rows.csv".'
                      WHEN v_why = 'an empty or malformed bucket name'
                      THEN format('Name the %s right after %s:// (lower-case letters, digits, '
                                  'dots, dashes and underscores), e.g. "%s://%s/exports".',
                                  CASE v_scheme WHEN 'az' THEN 'container' ELSE 'bucket' END,
                                  v_scheme, v_scheme,
                                  CASE v_scheme WHEN 'az' THEN 'container' ELSE 'bucket' END)
                      WHEN v_why = 'a relative or remote file path'
                      THEN 'A file URI names an absolute path on the worker''s host, with '
                           'three slashes, e.g. "file:///var/exports".'
                      ELSE 'Name an absolute location without dot segments or escapes, e.g. '
                           '"s3://bucket/exports" or "file:///var/exports".'
                  END;
    END IF;
    RETURN v_scheme || '://' || v_host || CASE WHEN v_path = '' THEN '' ELSE '/' || v_path END;
END
$function$;
