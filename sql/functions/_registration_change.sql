CREATE OR REPLACE FUNCTION pgjobs._registration_change(p_reg pgjobs.target_registry)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Why a registration that register_target's rule now refuses
-- (pgjobs._registration_problem) is refused, for the note its error adds
-- (pgjobs._target_registration) and doctor's detail (pgjobs._doctor_target):
-- 'the table did not change: this release refuses what it was registered
-- with' when the scope column's type is one this release refuses
-- (pgjobs._scope_type_inexact: an oid-alias type, xid8, "char") and is the
-- type it was registered with; 'the table changed after it was registered'
-- when the key or scope column is gone or of another type than at
-- registration; else both, which the registry cannot tell apart (a
-- collation, a NOT NULL or an index changed, or a rule of this release).
-- It said both always, so a job of an unchanged table failed saying its
-- table had changed. Locks nothing.
DECLARE
    v_key oid;
    v_scope oid;
BEGIN
    SELECT max(a.atttypid) FILTER (WHERE a.attname = p_reg.key_column),
           max(a.atttypid) FILTER (WHERE a.attname = p_reg.scope_column)
      INTO v_key, v_scope
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname IN (p_reg.key_column, p_reg.scope_column);
    IF v_key IS DISTINCT FROM p_reg.key_type::oid
       OR v_scope IS DISTINCT FROM p_reg.scope_type::oid THEN
        RETURN 'the table changed after it was registered';
    ELSIF pgjobs._scope_type_inexact(p_reg.scope_type) IS NOT NULL THEN
        RETURN 'the table did not change: this release refuses what it was registered with';
    END IF;
    RETURN 'the table changed after it was registered, or this release refuses what it was '
           'registered with';
END
$$;
