CREATE OR REPLACE FUNCTION pgjobs._field_fold(p_name text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A field name as a reader sees it, for pgjobs._field_guess: lower case,
-- without white space around it, and (in a UTF-8 database) in Unicode NFKC
-- (full-width letters as ASCII, a decomposed accent composed) without
-- zero-width and other invisible format characters (pgjobs._field_seen:
-- U+00AD, U+200B-U+200F, U+2060-U+2064, U+FEFF). Two names that fold alike
-- look alike: the typo guard's hint (pgjobs._field_guess) and the slip test
-- of a column's name (pgjobs._field_slip) compare them so. Locks nothing.
DECLARE
    v_name text := p_name;
BEGIN
    IF v_name IS NULL THEN
        RETURN NULL;
    END IF;
    IF getdatabaseencoding() = 'UTF8' THEN
        v_name := pgjobs._field_seen(normalize(v_name, NFKC));
    END IF;
    RETURN lower(btrim(v_name, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)
                               || CASE WHEN getdatabaseencoding() = 'UTF8'
                                       THEN chr(160) ELSE '' END));
END
$$;
