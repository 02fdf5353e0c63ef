CREATE OR REPLACE FUNCTION pgjobs.submit_items(
    p_kind text,
    p_target regclass,
    p_scope text,
    p_items jsonb,
    p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Submits a fan-out job: one parent job of kind p_kind on (p_target,
-- p_scope) and one item per element of the JSON array p_items (the element
-- is the item's payload), for external workers to claim one by one with
-- pgjobs.claim_items. Returns the parent job's id.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for, and the SECURITY DEFINER pgjobs._submit_items_as checks that role's
-- rights (the privilege a custom kind needs on the target, allowed_scopes).
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._submit_items_as(current_user, p_kind, p_target, p_scope, p_items, p_options) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.submit_items(text, regclass, text, jsonb, jsonb) IS
'Submits a fan-out job: one job of kind p_kind whose items (one per element of the JSON array '
'p_items, the element being the payload) external workers claim with claim_items. Options: '
'concurrency (the most items out at once across workers), priority, max_attempts (per item), '
'lease, run_at. The parent''s total is its item count, done its finished items. The caller '
'needs UPDATE on the target. Returns the job id.';
