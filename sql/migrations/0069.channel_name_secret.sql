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
-- Listeners re-ask pgjobs.channel after the upgrade. No data changes.
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
