CREATE OR REPLACE FUNCTION pgjobs._hold_target(p_target regclass)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Takes p_target's ACCESS SHARE lock, as any read of it does, to the end of
-- the transaction: a column renamed, dropped or retyped (ALTER TABLE takes
-- ACCESS EXCLUSIVE) cannot commit between this call and the statements
-- after it, so the columns pgjobs._columns_changed compares are the ones
-- those statements resolve. (A read that returns nothing: it runs in STABLE
-- callers and on a standby, where LOCK TABLE is not allowed or not wanted.)
-- Without SELECT on the table the caller learns nothing here: the
-- statements after it raise 42501 with their own hint.
BEGIN
    EXECUTE format('SELECT FROM %s WHERE false', p_target);
EXCEPTION WHEN insufficient_privilege THEN
    NULL;
END
$$;
