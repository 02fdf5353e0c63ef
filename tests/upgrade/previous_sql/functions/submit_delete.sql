CREATE OR REPLACE FUNCTION pgjobs.submit_delete(
    p_target regclass,
    p_scope text,
    p_filter jsonb DEFAULT '{}',
    p_exclude text[] DEFAULT '{}',
    p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Submits a delete of the rows of scope p_scope of p_target that match
-- p_filter, were created at or before now (the cutoff) and whose key is not
-- in p_exclude. From this moment the read path (pgjobs.mask, visible,
-- visible_count) hides exactly those rows. Options: the common ones, plus
-- page_size (rows per page; default adaptive), page_ms (target page
-- time, default 50) and strategy (how pages find their rows: 'auto'
-- default, 'range' or 'collect'; see pgjobs._page_strategy),
-- allow_unknown_fields and allow_unknown_keys. Everything is
-- validated before anything is written
-- (22023). For pgjobs_client: the caller needs DELETE on
-- the target (42501). Returns the job id.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._submit_delete_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._submit_delete_as(current_user, p_target, p_scope, p_filter, p_exclude, p_options) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.submit_delete(regclass, text, jsonb, text[], jsonb) IS
'Submits a delete of the rows of the scope matching the filter, created at or before now, '
'whose key is not in p_exclude; the read mask hides them at once. Options: priority, '
'max_attempts, run_at, on_conflict (queue | reject), lease, page_size, page_ms, strategy '
'(auto | range | collect), allow_unknown_fields (a filter naming a document field no row of the '
'scope has raises 22023 unless true), allow_unknown_keys (a key of p_exclude that names no row of '
'the scope the read path still shows, e.g. a typo or a key of another scope, raises 22023 naming '
'it unless true). A NULL p_exclude raises 22023 (pass ''{}'' to keep none): '
'it is never read as an empty list. Returns the job id.';
