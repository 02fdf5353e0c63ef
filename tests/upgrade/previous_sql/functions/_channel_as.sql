CREATE OR REPLACE FUNCTION pgjobs._channel_as(
    p_caller name,
    p_target regclass,
    p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The body of pgjobs.channel, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.channel, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- The name of the NOTIFY channel that carries the full events (with target
-- and scope) of the jobs of (p_target, p_scope), for a caller allowed to
-- read that target and scope: the checks of pgjobs.visible (SELECT on the
-- target, row-level security, pgjobs.allowed_scopes; 42501) on a registered,
-- trusted target (22023 / 42501). The scope is canonical
-- (pgjobs._canonical_scope: '01' and '1' of an integer scope name one
-- channel; 22023 for a value of the wrong type). The shared
-- channel `pgjobs` carries only id, kind, event, status, done and total.
-- SECURITY DEFINER for pgjobs_client. Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
    v_scope text;
BEGIN
    p_caller := pgjobs._enter('channel', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    v_reg := pgjobs._target(p_target);
    PERFORM pgjobs._require(p_target, 'SELECT');
    PERFORM pgjobs._require_scope(p_target, p_scope);
    v_scope := pgjobs._canonical_scope(v_reg, p_scope);  -- as pgjobs.jobs stores it; 22023
    RETURN pgjobs._leave(pgjobs._channel_name(p_target, v_scope));
END
$$;
