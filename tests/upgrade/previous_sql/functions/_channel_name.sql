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
-- p_scope): 'pgjobs_' and 40 hex digits of sha256(secret, target OID,
-- scope), the secret being 256 random bits made by migration 0006 that no
-- client can read. Unguessable without the secret, so only a caller that
-- pgjobs.channel let through learns it. p_scope must be canonical (the
-- scope as pgjobs.jobs stores it). PL/pgSQL so that its plan is cached for
-- the session: every event computes it. Locks nothing.
BEGIN
    RETURN 'pgjobs_' || left(encode(sha256(convert_to(
           (SELECT s.value #>> '{}' FROM pgjobs.settings s WHERE s.key = 'channel_secret')
           || ':' || p_target::oid::text || ':' || p_scope, 'UTF8')), 'hex'), 40);
END
$$;
