CREATE OR REPLACE FUNCTION pgjobs._import_refuse(p_message text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Raises 22023 with p_message: an import's INSERT calls it for a record it
-- must refuse (a scope column naming another scope), so that the record is
-- rejected with its line number like one whose value does not cast.
BEGIN
    RAISE EXCEPTION '%', p_message USING ERRCODE = '22023',
        HINT = 'Leave the scope column out of the source, or give it the job''s scope.';
END
$$;
