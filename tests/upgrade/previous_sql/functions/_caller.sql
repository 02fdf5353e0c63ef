CREATE OR REPLACE FUNCTION pgjobs._caller()
RETURNS name
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The role a client call acts for: the current_user of its SECURITY
-- INVOKER entry point (pgjobs.submit_delete, ...), which pgjobs._enter
-- keeps for the duration of the SECURITY DEFINER internal
-- (pgjobs._submit_delete_as, ...), read through pgjobs._entered: a
-- client's own setting, or one left by an earlier call, counts for nothing. Not session_user nor the `role`
-- setting: code of a less privileged role (its SECURITY DEFINER function,
-- its index expression during a superuser's ANALYZE) runs with that
-- role's rights and must ask pgjobs with them. Outside a client call (an
-- administrator calling an engine function directly) it is current_user.
-- PL/pgSQL rather than SQL: a SQL function with SET clauses is not
-- inlined and is planned again on every call (every client call makes one).
BEGIN
    RETURN coalesce((pgjobs._entered())[2]::name, current_user);
END
$$;
