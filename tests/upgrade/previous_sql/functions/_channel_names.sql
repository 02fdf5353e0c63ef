CREATE OR REPLACE FUNCTION pgjobs._channel_names(p_targets regclass[], p_scopes text[])
RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The NOTIFY channels carrying the full events of the jobs of (p_targets[i],
-- p_scopes[i]), in that order: 'pgjobs_' and 40 hex digits of
-- sha256(secret, target OID, scope), the secret being 256 random bits
-- (settings key 'channel_name_secret', made by migration 0069, replaced by
-- pgjobs.rotate_channel_secret) that no client can read. Unguessable
-- without the secret, so only a caller that pgjobs.channel let through
-- learns one, and a rotation ends every name learned before it. The
-- scopes must be canonical (as pgjobs.jobs stores them); a NULL target or
-- scope, or no secret, gives NULL. The one place the name is made:
-- pgjobs._channel_name is this for one pair, and pgjobs._notify_many names
-- the channels of a whole batch of events with one call, so the secret is
-- read once per batch rather than once per job (a call and a lookup that
-- were most of what naming cost). One lookup, then a simple expression
-- per pair (no statement to start per job). Locks nothing.
DECLARE
    v_secret text := (SELECT s.value #>> '{}' FROM pgjobs.settings s
                       WHERE s.key = 'channel_name_secret');
    v_names text[] := '{}'::text[];
BEGIN
    FOR i IN 1 .. coalesce(cardinality(p_targets), 0) LOOP
        v_names[i] := 'pgjobs_' || left(encode(sha256(convert_to(
                          v_secret || ':' || p_targets[i]::oid::text || ':' || p_scopes[i],
                          'UTF8')), 'hex'), 40);
    END LOOP;
    RETURN v_names;
END
$$;
