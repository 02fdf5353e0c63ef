CREATE OR REPLACE FUNCTION pgjobs._field_seen(p_name text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A field name as it prints: without the invisible format characters a
-- copy from a web page or a document leaves in it, anywhere (in a UTF-8
-- database): the soft hyphen (U+00AD), the zero-width space, non-joiner
-- and joiner and the left-to-right and right-to-left marks (U+200B-U+200F),
-- the word joiner and invisible operators (U+2060-U+2064) and the
-- byte-order mark (U+FEFF). "na<U+200B>me" prints as "name". The one list
-- of them: pgjobs._field_fold (the typo guard's look-alikes) and
-- pgjobs._field_slip (the slip test of set keys and import fields) both
-- take them out here. Locks nothing.
BEGIN
    IF p_name IS NULL OR getdatabaseencoding() <> 'UTF8' THEN
        RETURN p_name;
    END IF;
    RETURN regexp_replace(p_name, '[' || chr(173) || chr(8203) || '-' || chr(8207) || chr(8288)
                                  || '-' || chr(8292) || chr(65279) || ']', '', 'g');
END
$$;
