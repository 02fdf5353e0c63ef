CREATE OR REPLACE FUNCTION pgjobs._require_trusted(p_target regclass)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Refuses (42501) a target pgjobs, running as current_user, must not act
-- on: one whose code would run with rights its authors do not have, or
-- whose row-level security policies would confine current_user itself.
-- The rule, and the message and hint, are pgjobs._trust_verdict's (called
-- directly, not through pgjobs._trust_problem, its form without the roles:
-- one call fewer on every check). Called by pgjobs._target, which
-- every function that touches a target's rows or types goes through, and
-- by register_target. Locks nothing.
DECLARE
    v_problem record;
BEGIN
    v_problem := pgjobs._trust_verdict(p_target);
    IF v_problem.message IS NOT NULL THEN
        RAISE EXCEPTION '%', v_problem.message
            USING ERRCODE = '42501', HINT = v_problem.hint;
    END IF;
END
$$;
