CREATE OR REPLACE FUNCTION pgjobs._trust_problem(p_target regclass,
                                                 OUT message text,
                                                 OUT hint text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET plan_cache_mode = force_generic_plan
AS $$
-- Why pgjobs, running as current_user, must not act on p_target, in a form
-- that does not raise: the message and hint of the 42501 that
-- pgjobs._require_trusted raises from it, or both NULL when the target is
-- trusted: pgjobs._trust_verdict without the reach's roles. The engine's
-- paths (pgjobs._require_trusted, the claim's pgjobs._requeue_problem, a
-- page's full check) call pgjobs._trust_verdict directly, one call fewer
-- under every check. Locks nothing.
BEGIN
    SELECT v.message, v.hint INTO message, hint FROM pgjobs._trust_verdict(p_target) v;
END
$$;
