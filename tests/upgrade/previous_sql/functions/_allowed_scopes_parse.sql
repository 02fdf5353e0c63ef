CREATE OR REPLACE FUNCTION pgjobs._allowed_scopes_parse(p_list text, OUT entries text[],
    OUT problem text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one parse of a pgjobs.allowed_scopes value (through
-- pgjobs._allowed_scope_entries; pgjobs._require_scope reports problem).
-- A comma-separated list. An unquoted entry is read as it always was: the
-- list's outer spaces and the blanks around each comma dropped, the rest
-- kept as written (a '"' after its first character included). An entry
-- whose first non-blank character is '"' is quoted, CSV style: everything
-- up to the closing '"' is the scope, commas and blanks included, '""'
-- standing for one '"'; only blanks may follow it before the next comma.
-- An unquoted entry that is empty or only blanks (a leading, trailing or
-- doubled comma: 'acme,') names no scope and is left out, so it allows
-- nothing: it once allowed the empty-text tenant, which a list built by
-- joining values with commas never meant; '""' (quoted) still names it.
-- entries is NULL for an unset or blank list (no restriction); '{}' (allows
-- nothing) for a list of empty entries only (','). A malformed
-- list (a quote left open, text after a closing quote) is never read
-- leniently: entries '{}' (allows nothing) and problem says what is wrong,
-- since a partial reading of a value built from a tenant's name could allow
-- another tenant. Without any '"' the split is today's regexp, unchanged.
-- pgjobs.allowed_scopes_literal writes lists this reads back. Locks nothing.
DECLARE
    v_rest text := btrim(coalesce(p_list, ''));
    v_entry text;
    v_at integer;
    v_first boolean := true;
    v_quoted boolean;
BEGIN
    IF v_rest = '' THEN
        RETURN;  -- entries NULL: no restriction
    END IF;
    IF strpos(v_rest, '"') = 0 THEN
        entries := ARRAY(SELECT e FROM unnest(regexp_split_to_array(v_rest, '\s*,\s*'))
                                       WITH ORDINALITY AS x(e, n)
                          WHERE e !~ '^\s*$' ORDER BY n);
        RETURN;
    END IF;
    entries := '{}'::text[];
    LOOP
        v_quoted := v_rest ~ '^\s*"';
        IF v_quoted THEN
            v_rest := substr(v_rest, strpos(v_rest, '"') + 1);
            v_entry := '';
            LOOP
                v_at := strpos(v_rest, '"');
                IF v_at = 0 THEN
                    problem := format('entry %s opens a quote that is never closed',
                                      coalesce(array_length(entries, 1), 0) + 1);
                    entries := '{}'::text[];
                    RETURN;
                END IF;
                v_entry := v_entry || left(v_rest, v_at - 1);
                v_rest := substr(v_rest, v_at + 1);
                EXIT WHEN left(v_rest, 1) <> '"';
                v_entry := v_entry || '"';  -- '""': one quote, still inside
                v_rest := substr(v_rest, 2);
            END LOOP;
            v_rest := regexp_replace(v_rest, '^\s+', '');
            IF v_rest <> '' AND left(v_rest, 1) <> ',' THEN
                problem := format('entry %s has text after its closing quote: %s',
                                  coalesce(array_length(entries, 1), 0) + 1,
                                  quote_literal(left(v_rest, 40)));
                entries := '{}'::text[];
                RETURN;
            END IF;
        ELSE
            -- Unquoted: as regexp_split_to_array(list, '\s*,\s*') reads it.
            IF NOT v_first THEN
                v_rest := regexp_replace(v_rest, '^\s+', '');
            END IF;
            v_at := strpos(v_rest, ',');
            IF v_at = 0 THEN
                v_entry := v_rest;
                v_rest := '';
            ELSE
                v_entry := regexp_replace(left(v_rest, v_at - 1), '\s+$', '');
                v_rest := substr(v_rest, v_at);
            END IF;
        END IF;
        IF v_quoted OR v_entry !~ '^\s*$' THEN
            entries := entries || v_entry;
        END IF;
        EXIT WHEN v_rest = '';
        v_rest := substr(v_rest, 2);  -- the comma
        v_first := false;
    END LOOP;
END
$$;
