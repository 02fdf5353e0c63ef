CREATE OR REPLACE FUNCTION pgjobs._quoted_fields(p_fields text[])
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The document fields the typo guard names (pgjobs._judge_fields), as its
-- message lists them: the first 10 in the order given, each in double
-- quotes and clipped (pgjobs._clipped), then "and N more" when there are
-- more; the exclude-key guard lists its keys alike
-- (pgjobs._require_known_keys). A filter naming 200 misspelt fields of
-- 1000 characters made a message of 200 kB. Locks nothing.
BEGIN
    RETURN array_to_string(ARRAY(SELECT format('"%s"', pgjobs._clipped(f))
                                   FROM unnest(p_fields[1:10]) f), ', ')
           || CASE WHEN cardinality(p_fields) > 10
                   THEN format(' and %s more', cardinality(p_fields) - 10) ELSE '' END;
END
$$;
