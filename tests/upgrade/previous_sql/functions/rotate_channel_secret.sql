CREATE OR REPLACE FUNCTION pgjobs.rotate_channel_secret()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Replaces the secret that channel names are made of (settings key
-- 'channel_name_secret', pgjobs._channel_names) with 256 fresh random bits:
-- from its commit on, every event goes to new names, and a role that
-- learned a name once but may no longer ask pgjobs.channel (SELECT revoked,
-- its scope gone from pgjobs.allowed_scopes, pgjobs_client revoked; LISTEN
-- itself needs no privilege) hears nothing more. Listeners allowed still
-- re-ask pgjobs.channel: on each (target, scope) that pgjobs.jobs has a job
-- of, the old name gets one last event {"event": "channel_rotated",
-- "target", "scope"} (no id: not about a job), sent at the commit, unless
-- the notification queue is over half full. Returns how many old names
-- were told. The secret that seals verdicts
-- ('channel_secret', pgjobs._verdict_mac) is not touched. For
-- administrators. Locks the secret's settings row, so rotations run one at
-- a time; events never wait for it (they read the committed secret: an
-- event named before the rotation committed still goes to its old name).
DECLARE
    v_targets regclass[];
    v_scopes text[];
    v_old text[];
BEGIN
    PERFORM 1 FROM pgjobs.settings s WHERE s.key = 'channel_name_secret' FOR UPDATE;
    SELECT coalesce(array_agg(p.target ORDER BY p.target, p.scope), '{}'),
           coalesce(array_agg(p.scope ORDER BY p.target, p.scope), '{}')
      INTO v_targets, v_scopes
      FROM (SELECT DISTINCT j.target, j.scope FROM pgjobs.jobs j
             WHERE j.target IS NOT NULL AND j.scope IS NOT NULL) p;
    -- A full notification queue fails the COMMIT of a NOTIFY, and a stuck
    -- listener (the revoked role's, say) can fill it: then the secret is
    -- rotated and nobody is told (pgjobs._notify_many's rule for events).
    IF pgjobs._notification_queue_usage() > 0.5 THEN
        v_targets := '{}';
        v_scopes := '{}';
    END IF;
    v_old := pgjobs._channel_names(v_targets, v_scopes);
    INSERT INTO pgjobs.settings (key, value)
    VALUES ('channel_name_secret', to_jsonb(encode(sha256(convert_to(
                gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text,
                'UTF8')), 'hex')))
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    FOR i IN 1 .. cardinality(v_old) LOOP
        PERFORM pg_notify(v_old[i], jsonb_build_object(
            'event', 'channel_rotated',
            'target', v_targets[i]::text,
            'scope', left(v_scopes[i], 200))::text);
    END LOOP;
    RETURN cardinality(v_old);
END
$$;

COMMENT ON FUNCTION pgjobs.rotate_channel_secret() IS
'Replaces the secret that pgjobs.channel names are made of: events sent after the commit go to '
'new names, so a role that lost SELECT on a target, a scope of its pgjobs.allowed_scopes or '
'pgjobs_client stops hearing the channels it learned. Each old name of a (target, scope) with '
'jobs gets a last event "channel_rotated" (re-ask pgjobs.channel); returns how many. Sealed '
'verdicts are unaffected. For administrators.';
