CREATE OR REPLACE FUNCTION pgjobs._channel_name(p_target regclass, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The NOTIFY channel carrying the full events of the jobs of (p_target,
-- p_scope): pgjobs._channel_names of that one pair, where the name is made
-- (sha256 of a secret no client can read, the target's OID and the scope).
-- p_scope must be canonical (the scope as pgjobs.jobs stores it). Used by
-- pgjobs.channel; pgjobs._notify_many names a batch's channels at once.
-- Locks nothing.
BEGIN
    RETURN (pgjobs._channel_names(ARRAY[p_target], ARRAY[p_scope]))[1];
END
$$;
