CREATE OR REPLACE FUNCTION pgjobs.submit(
    p_kind text,
    p_target regclass,
    p_scope text,
    p_payload jsonb DEFAULT '{}',
    p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Submits a job of any kind that external workers (any language) run
-- through claim/heartbeat/complete/fail. The kinds pgjobs runs itself
-- (pgjobs._builtin_kind) have their own functions, which validate their
-- payload: 22023 here. The caller needs pgjobs._kind_privilege(p_kind) on
-- the target: UPDATE for any custom kind (42501).
-- Returns the job id.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._submit_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._submit_as(current_user, p_kind, p_target, p_scope, p_payload, p_options) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.submit(text, regclass, text, jsonb, jsonb) IS
'Submits a job of a custom kind for external workers (claim/heartbeat/complete/fail). '
'Options: priority (int, higher first), max_attempts (default 5), run_at (timestamptz), '
'on_conflict (queue | reject), lease (interval, default 30 seconds). The kinds pgjobs runs '
'itself (delete, backfill, export, import) are refused (22023): submit them with their own '
'functions, which validate their payload. The caller needs UPDATE on the target. Returns the '
'job id.';
