CREATE OR REPLACE FUNCTION pgjobs._compile_set(p_reg pgjobs.target_registry, p_set jsonb)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Compiles a backfill's p_set into an UPDATE's SET list. A key naming a
-- column gets the JSON value cast to the column's type (JSON null -> NULL;
-- a string is taken as its text; a json/jsonb column takes the JSON value
-- itself; a JSON array of scalars suits an array column). Any other key is
-- a field of the document column (dotted path for nesting), merged in: a
-- patch object is built from all such keys and merged recursively into
-- each row's document (missing or null parents become objects, other
-- fields are kept; an object value is merged into an existing object, any
-- other value replaces; a row whose document, or a parent, holds a scalar
-- or an array is left out by the job's pages and refused at its submit,
-- pgjobs._set_guard, unless the job says replace_non_objects). The key, scope and created_at columns, generated
-- columns and identity-always columns cannot be set, nor a column (or a
-- document field, when it is the document column) that the key, scope or
-- created_at column is generated from (pgjobs._generated_from: the row
-- would move to another scope), nor a field whose name (or a segment of
-- whose path) starts with $: that is an operator's name, nor objects nesting
-- more than 32 levels below the document (22023, see below). Values are inlined as
-- quoted literals; every cast is tried now, so a bad value raises 22023 at
-- submit, naming the key (an unqualified name of an oid-alias type with
-- pgjobs._oid_alias_hint's hint; such a value is stored by its oid,
-- pgjobs._literal_text). Locks nothing.
DECLARE
    v_hint text;
    v_key text;
    v_value jsonb;
    v_type text;
    v_base name;
    v_category "char";
    v_generated boolean;
    v_literal text;
    v_text text;
    v_fixed_text text;
    v_loose_text text;
    v_string boolean;
    v_columns text[] := '{}'::text[];
    v_patch jsonb := '{}'::jsonb;
    v_path text[];
    v_written text;
    v_fixed text;
    v_sources text[];
    v_fixeds text[];
    v_merge text;
    v_depth integer;
    v_guard_size bigint;
BEGIN
    IF p_set IS NULL OR jsonb_typeof(p_set) <> 'object' OR p_set = '{}' THEN
        RAISE EXCEPTION 'set must be a non-empty JSON object of column or field -> value'
            USING ERRCODE = '22023', HINT = 'For example {"status": "archived"}.';
    END IF;
    IF octet_length(p_set::text) > 65536 THEN
        RAISE EXCEPTION 'set is % bytes; the limit is 65536', octet_length(p_set::text)
            USING ERRCODE = '22023', HINT = 'Use the handler option for large computed values.';
    END IF;
    SELECT coalesce(array_agg(g.source ORDER BY g.source, g.generated), '{}'),
           coalesce(array_agg(g.generated ORDER BY g.source, g.generated), '{}')
      INTO v_sources, v_fixeds
      FROM pgjobs._generated_from(p_reg.target, ARRAY[p_reg.key_column::text,
               p_reg.scope_column::text, p_reg.created_at_column::text]) g;
    FOR v_key, v_value IN SELECT s.key, s.value FROM jsonb_each(p_set) s ORDER BY s.key LOOP
        IF v_key IN (p_reg.key_column, p_reg.scope_column, p_reg.created_at_column) THEN
            RAISE EXCEPTION 'backfill cannot set the % column "%"',
                CASE v_key WHEN p_reg.key_column THEN 'key'
                           WHEN p_reg.scope_column THEN 'scope' ELSE 'created_at' END, v_key
                USING ERRCODE = '22023',
                HINT = 'Backfill changes data columns and document fields only.';
        END IF;
        SELECT format_type(a.atttypid, a.atttypmod), bt.typname, bt.typcategory,
               a.attgenerated <> '' OR a.attidentity = 'a',
               -- a string or bit string, or an array of them: types whose
               -- cast cuts or pads to the column's length
               coalesce((SELECT et.typcategory IN ('S', 'V') FROM pg_catalog.pg_type et
                          WHERE et.oid = CASE WHEN bt.typcategory = 'A' AND bt.typelem <> 0
                                              THEN pgjobs._base_type(bt.typelem)
                                              ELSE bt.oid END), false)
          INTO v_type, v_base, v_category, v_generated, v_string
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_type bt ON bt.oid = pgjobs._base_type(a.atttypid)
         WHERE a.attrelid = p_reg.target AND a.attname = v_key
           AND a.attnum > 0 AND NOT a.attisdropped;
        -- What the assignment writes: the column, or the document for a field.
        v_written := CASE WHEN v_type IS NOT NULL THEN v_key
                          ELSE p_reg.document_column::text END;
        v_fixed := v_fixeds[array_position(v_sources, v_written)];
        IF v_fixed IS NOT NULL THEN
            RAISE EXCEPTION 'backfill cannot set "%": the % column "%" is generated from %',
                v_key,
                CASE v_fixed WHEN p_reg.scope_column::text THEN 'scope'
                             WHEN p_reg.key_column::text THEN 'key' ELSE 'created_at' END,
                v_fixed,
                CASE WHEN v_written = v_key THEN 'it'
                     ELSE format('the document column "%s"', v_written) END
                USING ERRCODE = '22023',
                HINT = 'Writing it would move the row to another scope (or change its key or '
                       'created_at); backfill changes only columns those are not computed from.';
        END IF;
        IF v_generated THEN
            RAISE EXCEPTION 'backfill cannot set the generated column "%"', v_key
                USING ERRCODE = '22023',
                HINT = 'PostgreSQL computes it; set the columns it is computed from.';
        END IF;
        IF v_type IS NOT NULL AND v_key IS DISTINCT FROM p_reg.document_column THEN
            -- The value's text: a string's own, a JSON array's elements as
            -- an array literal (for an array column), else its JSON text.
            v_text := CASE
                WHEN jsonb_typeof(v_value) = 'string' THEN v_value #>> '{}'
                WHEN jsonb_typeof(v_value) = 'array' AND v_category = 'A'
                    THEN (SELECT coalesce(array_agg(e.value ORDER BY e.ord), '{}')::text
                            FROM jsonb_array_elements_text(v_value)
                                 WITH ORDINALITY AS e(value, ord))
                ELSE v_value::text END;
            v_fixed_text := NULL;
            v_loose_text := NULL;
            BEGIN
                IF jsonb_typeof(v_value) = 'null' THEN
                    v_literal := format('NULL::%s', pgjobs._type_sql(v_type));
                ELSIF v_base IN ('json', 'jsonb') THEN
                    -- A json/jsonb column takes the JSON value itself ("a" stays a string).
                    v_literal := format('%L::%s', v_value::text, pgjobs._type_sql(v_type));
                    EXECUTE 'SELECT ' || v_literal;
                ELSE
                    -- Parsed once, here, in the submitter's session (its
                    -- TimeZone, DateStyle; 'now' is the submit's), and
                    -- written in a fixed form (pgjobs._literal_text): the
                    -- stored text was parsed again by each page, in the
                    -- runner's session, and a backfill from Asia/Tokyo of
                    -- {"due": "2024-01-01 00:00"} set midnight UTC on the
                    -- rows of one runner and midnight in New York on the
                    -- others'.
                    -- The text of the value cast to the column's type, and to
                    -- that type without modifiers (pgjobs._loose_type).
                    EXECUTE format('SELECT pgjobs._literal_text(%1$L::%2$s), '
                                   'pgjobs._literal_text(%1$L::%3$s)',
                                   v_text, v_type, format_type(pgjobs._loose_type(
                                       (SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                         WHERE a.attrelid = p_reg.target AND a.attname = v_key
                                           AND a.attnum > 0 AND NOT a.attisdropped)), -1))
                       INTO v_fixed_text, v_loose_text;
                    v_literal := format('%L::%s', v_fixed_text, pgjobs._type_sql(v_type));
                END IF;
            EXCEPTION
                WHEN data_exception OR cannot_coerce OR integrity_constraint_violation THEN
                    RAISE EXCEPTION 'set: % is not a valid % for column "%"', v_value, v_type, v_key
                        USING ERRCODE = '22023',
                        HINT = format('Give "%s" a value of type %s.', v_key, v_type);
                WHEN OTHERS THEN
                    -- A name an oid-alias type's input found no object for
                    -- (42P01, 42704, ...): the value's fault, said as every
                    -- entry point says it (pgjobs._oid_alias_hint).
                    v_hint := pgjobs._oid_alias_hint(v_type::regtype, SQLSTATE);
                    IF v_hint IS NULL THEN
                        RAISE;
                    END IF;
                    RAISE EXCEPTION 'set: % is not a valid % for column "%": %', v_value, v_type,
                                    v_key, SQLERRM
                        USING ERRCODE = '22023', HINT = v_hint;
            END;
            -- A cast to varchar(4) cuts 'abcdef' to 'abcd', to bit(4)
            -- pads or cuts, where the UPDATE a client writes refuses the
            -- value ("value too long"): so is it refused here, rather
            -- than set cut on every row. (Rounding a numeric or a time
            -- to the column's precision is what UPDATE does too.)
            IF v_fixed_text IS DISTINCT FROM v_loose_text
               AND v_string
               AND rtrim(v_fixed_text, ' ') IS DISTINCT FROM rtrim(v_loose_text, ' ') THEN
                RAISE EXCEPTION 'set: % does not fit column "%" (%): it would be stored as %',
                    v_value, v_key, v_type, quote_literal(v_fixed_text)
                    USING ERRCODE = '22023',
                    HINT = format('Give "%s" a value of at most the length of %s, as an '
                                  'UPDATE of the column would require.', v_key, v_type);
            END IF;
            v_columns := v_columns || format('%I = %s', v_key, v_literal);
        ELSIF v_key = p_reg.document_column THEN
            RAISE EXCEPTION 'set: name fields inside the document, not the document column "%"',
                v_key USING ERRCODE = '22023',
                HINT = 'For example {"status": "done"} sets the field status of the document.';
        ELSIF p_reg.document_column IS NULL THEN
            RAISE EXCEPTION 'set: "%" is not a column of %', v_key, p_reg.target
                USING ERRCODE = '22023',
                HINT = 'The target has no document column, so every key must name a column.';
        ELSE
            v_path := string_to_array(v_key, '.');
            IF v_key = '' OR array_position(v_path, '') IS NOT NULL OR cardinality(v_path) > 16 THEN
                RAISE EXCEPTION 'set: invalid field path "%"', v_key USING ERRCODE = '22023',
                    HINT = 'Use dotted names such as "address.city", at most 16 levels.';
            END IF;
            -- A $ name is an operator in the filter language, never a field
            -- (a filter cannot name it): {"$set": {"status": "x"}}, written
            -- as for MongoDB, would otherwise add a field "$set" to every
            -- row's document and leave status as it was.
            IF EXISTS (SELECT 1 FROM unnest(v_path) p WHERE left(p, 1) = '$') THEN
                RAISE EXCEPTION 'set: "%" is not a field name: set takes no operators', v_key
                    USING ERRCODE = '22023',
                    HINT = 'Map each column or field straight to its value, e.g. '
                           '{"status": "archived"}, not {"$set": {"status": "archived"}}.';
            END IF;
            v_patch := pgjobs._jsonb_merge(v_patch, pgjobs._jsonb_nest(v_path, v_value));
        END IF;
    END LOOP;
    -- Each object of the patch is a place every page tests, written out
    -- from the document down (pgjobs._set_guard: the row must hold an
    -- object, null or nothing there), so the guard grows with the square
    -- of the patch's depth: a 6 kB set nesting a value 1,000 levels deep
    -- ({"x": {"a": {"a": ...}}}) wrote about 23 MB of guard (3.6 MB at 400
    -- levels), took 26 s to submit, and its test of four rows did not end
    -- in 15 minutes. Refused, as the limit on a path's
    -- segments is: deeper than 32 levels, or a guard past about 16 MB
    -- (very many objects, or objects under keys thousands of characters
    -- long; estimated, the walk stopping at the first level too deep).
    WITH RECURSIVE node(value, depth, place) AS (
        SELECT v_patch, 0, 0
        UNION ALL
        SELECT e.value, n.depth + 1, n.place + octet_length(e.key)
          FROM node n, jsonb_each(n.value) e
         WHERE jsonb_typeof(e.value) = 'object' AND n.depth <= 32)
    SELECT max(depth), sum(4 * (48 * depth + place) + 200)
      INTO v_depth, v_guard_size
      FROM node;
    IF v_depth > 32 OR v_guard_size > 16777216 THEN
        RAISE EXCEPTION 'set: %', CASE WHEN v_depth > 32
            THEN 'its objects nest more than 32 levels deep into the document'
            ELSE format('its objects are too many, or under too long keys, for the check of '
                        'each place every page makes (about %s bytes; the limit is 16777216)',
                        v_guard_size) END
            USING ERRCODE = '22023',
            HINT = 'Set at most 32 levels of nested objects, with fewer objects or shorter '
                   'keys; store a deep value in a json or jsonb column, or as a JSON string.';
    END IF;
    IF v_patch <> '{}' THEN
        -- The patch merged into each row's document by the native
        -- operators (pgjobs._jsonb_merge_sql); one too large to write out
        -- by pgjobs._jsonb_merge, a call per object of it per row. A
        -- document that is no object (SQL NULL, JSON null; or, with the
        -- job's replace_non_objects, a scalar or an array) gives the patch,
        -- as if it were {}: `||` appended the patch to an array, and made
        -- one of a scalar (a JSON null document became [null, {...}]). Rows
        -- whose document or parent fields hold a scalar or an array are
        -- otherwise left out by the pages (pgjobs._set_guard).
        v_merge := pgjobs._jsonb_merge_sql(quote_ident(p_reg.document_column), v_patch);
        v_columns := v_columns || format('%I = %s', p_reg.document_column, coalesce(v_merge,
            format('pgjobs._jsonb_merge(CASE WHEN pg_catalog.jsonb_typeof(%1$I) '
                   'OPERATOR(pg_catalog.=) ''object'' THEN %1$I ELSE ''{}''::jsonb END, '
                   '%2$L::jsonb)', p_reg.document_column, v_patch::text)));
    END IF;
    RETURN array_to_string(v_columns, ', ');
END
$$;
