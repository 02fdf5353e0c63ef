CREATE OR REPLACE FUNCTION pgjobs._require(p_target regclass, p_privilege text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one check of the calling role (pgjobs._caller) before a client
-- function acts on p_target. A client may only ask pgjobs to do what it
-- could do itself: submitting a delete needs DELETE on the target, a
-- backfill UPDATE, an export or a read through the mask SELECT (the kind
-- to privilege map: pgjobs._kind_privilege). Raises 42501 naming the
-- privilege.
--
-- Row-level security: pgjobs reads and writes the target as its own role,
-- which no policy confines, so a caller that a policy on the target would
-- confine (row security enabled, and the caller neither superuser nor
-- BYPASSRLS nor, unless FORCE ROW LEVEL SECURITY is set, the table's
-- owner) is refused with 42501, unless an administrator registered the
-- target with {"ignore_row_security": true}. The check itself is
-- pgjobs._require_role, which the worker and the engine repeat for the
-- submitter when they run the job (pgjobs._require_submitter). Locks nothing.
BEGIN
    PERFORM pgjobs._require_role(pgjobs._caller(), p_target, p_privilege, NULL);
END
$$;
