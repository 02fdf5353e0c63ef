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
-- look like a slip rather than a document field? The two spellings a new
-- user gets wrong first: a column in another case ("Label" for label:
-- identifiers compare exactly), and the document column's name, in any
-- case, as a path prefix ("data.status": paths are relative to the
-- document). column_name: the column p_field names in another case (the
-- first by position); relative_path: p_field without the document column's
-- prefix. Both NULL: no slip (and for a column named exactly so). The one
-- test for backfill's set keys (pgjobs._submit_backfill_as), an import's
-- fields (pgjobs._import_insert_sql) and the typo guard's hint
-- (pgjobs._require_known_fields); each words its own message. Locks nothing.
BEGIN
    IF p_field IS NULL OR EXISTS (
            SELECT 1 FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = p_reg.target AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attname = p_field) THEN
        RETURN;
    END IF;
    SELECT a.attname INTO column_name
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attnum > 0 AND NOT a.attisdropped
       AND lower(a.attname) = lower(p_field)
     ORDER BY a.attnum
     LIMIT 1;
    IF lower(left(p_field, length(p_reg.document_column) + 1))
           = lower(p_reg.document_column || '.') THEN
        relative_path := substr(p_field, length(p_reg.document_column) + 2);
    END IF;
END
$$;
