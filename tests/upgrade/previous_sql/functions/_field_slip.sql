CREATE OR REPLACE FUNCTION pgjobs._field_slip(
    p_reg pgjobs.target_registry,
    p_field text,
    OUT column_name name,
    OUT relative_path text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Does field p_field (a name that is not a column of the target as written)
-- look like a slip rather than a document field? The spellings a new user
-- gets wrong first: a column in another case ("Label" for label:
-- identifiers compare exactly), a name with white space around it or
-- around a part of its path (" age" from a CSV header "name, age", "age "
-- from a spreadsheet cell, "owner. team": the space becomes part of the
-- name, so the value would land in a document field of that name and the
-- column keep its default), and the document column's name, in any case,
-- as a path prefix ("data.status": paths are relative to the document).
-- And what a reader cannot see or tell apart (adversarial pass h171): an
-- invisible format character anywhere in a name ("na<U+200B>me", a soft
-- hyphen, a word joiner, a left-to-right mark: pgjobs._field_seen), and,
-- for a column's name and the document column's, the folding of the typo
-- guard's hint (pgjobs._field_fold: full-width letters, "ｎａｍｅ" for name,
-- an input method left on; a decomposed accent): such a key wrote a new
-- document field into every row and left the column it meant unchanged.
-- Document paths are not NFKC-folded: a new field named "m²" or "µs" is
-- the user's, and stays no slip.
-- column_name: the column p_field names once its case, surrounding white
-- space and look-alike characters are set aside (one that differs in case
-- only first, then the first by position); relative_path: the path p_field
-- means in the document (without the document column's prefix, the white
-- space around its parts and the invisible characters in them) when that
-- is not p_field itself. Both NULL: no slip (and for a column named exactly so).
-- The one test for backfill's set keys (pgjobs._submit_backfill_as), an
-- import's fields (pgjobs._import_insert_sql) and the typo guard's hint
-- (pgjobs._require_known_fields); each words its own message. Locks nothing.
DECLARE
    -- White space a spreadsheet or a hand-typed header leaves around a name:
    -- ASCII's, and (in a UTF-8 database) the no-break space, the zero-width
    -- space and a byte-order mark that was not at the start of the file.
    v_space text := ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)
                    || CASE WHEN getdatabaseencoding() = 'UTF8'
                            THEN chr(160) || chr(8203) || chr(65279) ELSE '' END;
    v_name text;
    v_fold text;
BEGIN
    IF p_field IS NULL OR EXISTS (
            SELECT 1 FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = p_reg.target AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attname = p_field) THEN
        RETURN;
    END IF;
    v_name := array_to_string(ARRAY(SELECT btrim(pgjobs._field_seen(part.p), v_space)
                                      FROM unnest(string_to_array(p_field, '.'))
                                           WITH ORDINALITY AS part(p, n)
                                     ORDER BY part.n), '.');
    -- Two names of ASCII characters only fold alike when they are equal but
    -- for case, which lower() sees: the folding (normalize, a regular
    -- expression) runs for the names that hold other characters only.
    v_fold := pgjobs._field_fold(v_name);
    SELECT a.attname INTO column_name
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attnum > 0 AND NOT a.attisdropped
       AND (lower(a.attname) = lower(v_name)
            OR ((v_name !~ '^[\x01-\x7f]*$' OR a.attname !~ '^[\x01-\x7f]*$')
                AND pgjobs._field_fold(a.attname) = v_fold))
     ORDER BY lower(a.attname) = lower(v_name) DESC, a.attnum
     LIMIT 1;
    IF lower(left(v_name, length(p_reg.document_column) + 1))
           = lower(p_reg.document_column || '.') THEN
        relative_path := substr(v_name, length(p_reg.document_column) + 2);
    ELSIF strpos(v_name, '.') > 0
          AND pgjobs._field_fold(split_part(v_name, '.', 1))
              = pgjobs._field_fold(p_reg.document_column) THEN
        relative_path := substr(v_name, strpos(v_name, '.') + 1);
    ELSIF column_name IS NULL AND v_name <> p_field AND p_reg.document_column IS NOT NULL THEN
        relative_path := v_name;
    END IF;
END
$$;
