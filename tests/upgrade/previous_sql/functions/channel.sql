CREATE OR REPLACE FUNCTION pgjobs.channel(p_target regclass, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The name of the NOTIFY channel that carries the full events (with target
-- and scope) of the jobs of (p_target, p_scope), for a caller allowed to
-- read that target and scope: the checks of pgjobs.visible (SELECT on the
-- target, row-level security, pgjobs.allowed_scopes; 42501) on a registered,
-- trusted target (22023 / 42501). The scope is canonical
-- (pgjobs._canonical_scope: '01' and '1' of an integer scope name one
-- channel; 22023 for a value of the wrong type). The shared
-- channel `pgjobs` carries only id, kind, event, status, done and total.
-- For pgjobs_client. Locks nothing.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._channel_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._channel_as(current_user, p_target, p_scope) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.channel(regclass, text) IS
'The name of a NOTIFY channel carrying the full events (id, kind, event, status, done, total, '
'target, scope) of the jobs of (target, scope); LISTEN to it. Needs SELECT on the target and, '
'when pgjobs.allowed_scopes is set, the scope in it (42501). The shared channel pgjobs carries '
'no target or scope unless an administrator allowed it (pgjobs.set_defaults).';
