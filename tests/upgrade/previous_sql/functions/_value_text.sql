CREATE OR REPLACE FUNCTION pgjobs._value_text(p_value anyelement)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET bytea_output = 'hex'
AS $$
-- The PostgreSQL text of a value in the styles the worker's sessions print
-- in (pgjobs.poller: DateStyle ISO, IntervalStyle postgres, all of a float's
-- digits, bytea as hex), whatever the calling session's: the text
-- pgjobs.visible writes for a value holding an array whose lower bounds are
-- not all 1 (pgjobs._array_bounds_test). The caller's own styles made it
-- another value read back in another session: '[0:0]={2020-01-02}'::date[]
-- under DateStyle 'SQL, DMY' was '[0:0]={02/01/2020}', which a session in
-- MDY order reads as 1 February; an interval '-1 day -2 hours' under
-- IntervalStyle sql_standard was '-1 2:00:00', which the postgres style
-- reads as -1 day +2 hours. It parses nothing (the pins are output
-- only; pgjobs._visible_as, which parses the caller's filter and cursor,
-- cannot pin them). Called per row only for such a value (a CASE): its
-- settings cost a GUC save and restore each. Locks nothing.
SELECT p_value::pg_catalog.text
$$;

COMMENT ON FUNCTION pgjobs._value_text(anyelement) IS
'PostgreSQL text of a value in fixed styles (DateStyle ISO, IntervalStyle postgres, '
'extra_float_digits 3, bytea hex), whatever the session''s: what pgjobs.visible writes for a '
'value holding an array whose lower bounds are not all 1.';
