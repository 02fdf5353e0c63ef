CREATE OR REPLACE FUNCTION pgjobs._mask_as(
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
-- The body of pgjobs.mask, run as pgjobs' owner for the role p_caller
-- (the current_user of pgjobs.mask, its only permitted caller: pgjobs._enter,
-- 42501 otherwise); every check below is of p_caller (pgjobs._caller).
-- The read-path mask of (p_target, p_scope): a boolean SQL expression over
-- the target's unqualified column names that is false exactly for the rows
-- a queued or running delete job will delete, and true for every other
-- row ('true' when no delete is pending). It is built from the jobs'
-- stored predicates, the same text the runner's pages use, so a read in
-- the middle of a job returns what it will return after it. Cancel or
-- failure ends the job, which lifts its mask from the rows that remain.
-- SECURITY DEFINER for pgjobs_client; needs SELECT on the target and,
-- when pgjobs.allowed_scopes is set, p_scope in it (42501).
-- Locks nothing.
DECLARE
    v_reg pgjobs.target_registry;
BEGIN
    p_caller := pgjobs._enter('mask', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    -- The call just entered, passed on (as pgjobs._visible_as).
    PERFORM pgjobs._target_recent(p_target, true, ARRAY['mask', p_caller]);
    -- pgjobs._require for the role pgjobs._enter returned (pgjobs._caller):
    -- the same one check, without a second read of the call stack.
    PERFORM pgjobs._require_role(p_caller, p_target, 'SELECT', NULL);
    PERFORM pgjobs._require_scope(p_target, p_scope);
    -- Jobs store canonical scopes: '01' masks what a delete on '1' deletes.
    SELECT r.* INTO v_reg FROM pgjobs.target_registry r WHERE r.target = p_target;
    IF FOUND THEN
        p_scope := pgjobs._canonical_scope(v_reg, p_scope);
    END IF;
    RETURN pgjobs._leave(pgjobs._mask(p_target, p_scope));
END
$$;
