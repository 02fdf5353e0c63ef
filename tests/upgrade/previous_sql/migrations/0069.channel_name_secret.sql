-- pgjobs 0069: channel names get a secret of their own. pgjobs.channel's
-- names were sha256 of 0006's channel_secret, which also seals verdicts
-- (pgjobs._verdict_mac), so it could never change: a role that learned a
-- name and then lost the right to ask for it (SELECT revoked, its scope
-- gone from pgjobs.allowed_scopes, pgjobs_client revoked) kept receiving
-- that channel's events for good, LISTEN needing no privilege. Names now
-- come from 'channel_name_secret', which pgjobs.rotate_channel_secret
-- replaces; 'channel_secret' keeps sealing verdicts only, unchanged, so
-- verdicts sealed before the upgrade still verify.
-- A fresh secret, not a copy of the old one: every name learned before the
-- upgrade (by roles that lost access since, too) stops receiving events at
-- the upgrade, and a copy would have left the two secrets equal on every
-- install (fresh ones too, migrations running in order) until a rotation.
-- Listeners on the old names are told, as pgjobs.rotate_channel_secret
-- tells them: each old name of a (target, scope) with jobs gets one last
-- event {"event": "channel_rotated", "target", "scope"} at the migrate's
-- commit (unless the notification queue is over half full), and they
-- re-ask pgjobs.channel. No data changes.
-- depends: 0057.client_kept

-- 256 random bits from the server's strong random source (gen_random_uuid), as 0006.
INSERT INTO pgjobs.settings (key, value)
VALUES ('channel_name_secret', pg_catalog.to_jsonb(pg_catalog.encode(pg_catalog.sha256(
            pg_catalog.convert_to(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text
                                  || pg_catalog.gen_random_uuid()::text, 'UTF8')), 'hex')));

COMMENT ON TABLE pgjobs.settings IS
    'Administrator defaults (key ''defaults'', set with pgjobs.set_defaults), the secret for '
    'channel names (key ''channel_name_secret'', replaced by pgjobs.rotate_channel_secret) and '
    'the secret that seals verdicts (key ''channel_secret''). Not readable by clients.';

-- The old names, made as 4fe7471's pgjobs._channel_names made them (from
-- 'channel_secret'); the target named as a regclass prints with the
-- search_path the engine's functions pin (pg_catalog, pg_temp).
DO $told$
DECLARE
    v_secret text := (SELECT s.value #>> '{}' FROM pgjobs.settings s
                       WHERE s.key = 'channel_secret');
    r record;
BEGIN
    IF v_secret IS NULL OR pg_catalog.pg_notification_queue_usage() > 0.5 THEN
        RETURN;
    END IF;
    FOR r IN SELECT DISTINCT j.target::oid AS target_oid,
                    pg_catalog.format('%I.%I', n.nspname, c.relname) AS target_name, j.scope
               FROM pgjobs.jobs j
               JOIN pg_catalog.pg_class c ON c.oid = j.target
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE j.scope IS NOT NULL
              ORDER BY 2, 3 LOOP
        PERFORM pg_catalog.pg_notify(
            'pgjobs_' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
                v_secret || ':' || r.target_oid::text || ':' || r.scope, 'UTF8')), 'hex'), 40),
            pg_catalog.jsonb_build_object('event', 'channel_rotated', 'target', r.target_name,
                                          'scope', pg_catalog.left(r.scope, 200))::text);
    END LOOP;
END
$told$;
