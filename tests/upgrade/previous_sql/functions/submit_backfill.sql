CREATE OR REPLACE FUNCTION pgjobs.submit_backfill(
    p_target regclass,
    p_scope text,
    p_filter jsonb,
    p_set jsonb,
    p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Submits a backfill: for the rows of scope p_scope matching p_filter and
-- created at or before now (the cutoff), sets what p_set says (columns get
-- the value cast to their type; document fields are merged in). Options:
-- the common ones, page_size, page_ms, and (admins only) handler: a
-- function (regclass, text[]) RETURNS bigint called with each page's keys
-- instead of p_set, returning the rows it changed. Everything is validated
-- before anything is written (22023; 42501 for a non-admin handler).
-- For pgjobs_client: the caller needs UPDATE on the target.
-- Returns the job id.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._submit_backfill_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._submit_backfill_as(current_user, p_target, p_scope, p_filter, p_set, p_options) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.submit_backfill(regclass, text, jsonb, jsonb, jsonb) IS
'Submits a backfill of the rows of the scope matching the filter and created at or before now: '
'p_set maps columns (value cast to the column type) and document fields (merged in) to JSON '
'values. Options: priority, max_attempts, run_at, on_conflict, lease, page_size, page_ms, and '
'for admins handler (a function (regclass, text[]) RETURNS bigint run on each page''s keys); '
'allow_unknown_fields (a filter naming a document field no row of the scope has raises 22023 '
'unless true); replace_non_objects (a row whose document holds a string, number, boolean or '
'array where set merges fields in raises 22023, and is left unchanged and counted in '
'result.skipped when a page meets it, unless true). Returns the job id.';
