CREATE OR REPLACE FUNCTION pgjobs._caller()
RETURNS name
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The role a client call acts for. Inside a SECURITY DEFINER function
-- current_user is the owner, but the `role` setting still holds the
-- caller's SET ROLE (as PostgREST-style apps use per request), and
-- session_user the login role otherwise.
SELECT CASE WHEN current_setting('role') = 'none' THEN session_user
            ELSE current_setting('role')::name END;
$$;
