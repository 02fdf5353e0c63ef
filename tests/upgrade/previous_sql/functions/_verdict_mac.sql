CREATE OR REPLACE FUNCTION pgjobs._verdict_mac(p_key text, p_at text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The seal of a verdict kept in a session setting (pgjobs._verdict_fresh):
-- 64 hex digits of a nested sha256 over the engine's secret (migration
-- 0006's channel_secret, which no client can read; channel names have
-- their own since 0069, so rotating theirs leaves verdicts sealed), the
-- verdict's key (which pgjobs._verdict_keep and _verdict_fresh make of the slot and what
-- the verdict is about, so a seal is good in its own slot only), the role
-- it was reached as (current_user), this backend's pid and the time p_at.
-- Anyone can SET a pgjobs.* setting; without the secret nobody can make a
-- seal that matches, so a forged, edited or copied (other session, other
-- role, other key, other slot, other time) value is no verdict. Nested (an
-- outer hash over the secret and the inner hash), so the inner input cannot
-- be extended. NULL when current_user may not read pgjobs.settings (no
-- verdict is kept then). Locks nothing.
DECLARE
    v_secret text;
BEGIN
    IF NOT has_table_privilege('pgjobs.settings', 'SELECT') THEN
        RETURN NULL;
    END IF;
    SELECT s.value #>> '{}' INTO v_secret FROM pgjobs.settings s WHERE s.key = 'channel_secret';
    IF v_secret IS NULL THEN
        RETURN NULL;
    END IF;
    -- The inner input is a JSON array, not a joined string: no field can
    -- borrow another's characters (a key ending in '/x' against a role
    -- 'x/...'), so equal inputs mean equal fields.
    RETURN encode(sha256(convert_to('pgjobs verdict:' || v_secret || ':' || encode(sha256(
               convert_to(jsonb_build_array('pgjobs verdict', v_secret, p_key, current_user,
                                            pg_backend_pid(), p_at)::text, 'UTF8')),
               'hex'), 'UTF8')), 'hex');
END
$$;
