CREATE OR REPLACE FUNCTION pgjobs._a_job(p_kind text)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- "a delete job", "an export job", "an import job": the one place messages
-- put an article before a kind ("a export job" read as a typo of the
-- engine's). Locks nothing.
SELECT CASE WHEN p_kind ~ '^[aeiou]' THEN 'an ' ELSE 'a ' END || p_kind || ' job';
$$;
