CREATE OR REPLACE FUNCTION pgjobs._call_seal(p_depth integer, p_entry text, p_caller text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The seal of a client call's setting pgjobs.call_<p_depth>
-- ('<entry>/<caller>/<seal>', pgjobs._enter writes it, pgjobs._entered
-- honours it only when the seal matches): 64 hex digits of a nested sha256
-- over the engine's secret (migration 0006's channel_secret, which no
-- client can read), the depth, the entry point, the role the call acts
-- for, the role the check runs as (current_user: the owner of pgjobs inside
-- a body) and this backend's pid. Any role may set a pgjobs.* setting, and
-- the call-stack check reads PG_CONTEXT, where text a role wrote (an SQL
-- statement, a function's quoted name) may hold whole lines that imitate a
-- body and its entry point; without the secret nobody can make the seal of
-- a slot, so imitated frames over a self-set slot name no one, and code
-- running inside a call cannot make the call act for another role. Nested
-- (an outer hash over the secret and the inner one), so the inner input
-- cannot be extended; a JSON array, so no field borrows another's
-- characters. NULL when current_user may not read pgjobs.settings (nothing
-- is honoured then). Locks nothing.
DECLARE
    v_secret text;
BEGIN
    IF NOT has_table_privilege('pgjobs.settings', 'SELECT') THEN
        RETURN NULL;
    END IF;
    SELECT s.value #>> '{}' INTO v_secret FROM pgjobs.settings s WHERE s.key = 'channel_secret';
    RETURN encode(sha256(convert_to('pgjobs call:' || v_secret || ':' || encode(sha256(
               convert_to(jsonb_build_array('pgjobs call', v_secret, p_depth, p_entry, p_caller,
                                            current_user, pg_backend_pid())::text, 'UTF8')),
               'hex'), 'UTF8')), 'hex');
END
$$;

COMMENT ON FUNCTION pgjobs._call_seal(integer, text, text) IS
'Internal: the seal (64 hex digits, keyed with the engine''s secret) of the setting '
'pgjobs.call_<depth> that pgjobs._enter writes for a client call and pgjobs._entered checks: '
'a value a role set itself, or imitated call-stack lines over it, names no one.';
