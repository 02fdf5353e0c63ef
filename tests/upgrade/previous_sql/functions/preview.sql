CREATE OR REPLACE FUNCTION pgjobs.preview(
    p_target regclass,
    p_scope text,
    p_filter jsonb DEFAULT '{}',
    p_exclude text[] DEFAULT '{}',
    p_options jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- What a delete (or, with {"kind": "backfill"}, a backfill) of the rows of
-- scope p_scope matching p_filter, keys not in p_exclude, submitted now
-- would do. Writes nothing. Returns {"predicate", "matches", "exact",
-- "scope_rows", "sample", "unknown_fields", ...}: pgjobs._preview_as has
-- the contract. For pgjobs_client: the caller needs the privilege the job
-- needs (DELETE, or UPDATE for a backfill) and SELECT (the preview reads
-- the rows, as DELETE ... RETURNING would), and the scope in
-- pgjobs.allowed_scopes when that is set (42501).
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._preview_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._preview_as(current_user, p_target, p_scope, p_filter, p_exclude, p_options) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.preview(regclass, text, jsonb, text[], jsonb) IS
'Previews a delete (or with {"kind": "backfill"} a backfill) submitted now, writing nothing: '
'{"predicate" (the row set the job would store), "matches" (rows it would change; exact unless '
'past the time limit, option time_limit_ms, default 2000, then estimated with "exact": false), '
'"exact", "scope_rows", "sample" (up to 10 matching keys in key order, as text), '
'"unknown_fields" (the filter''s document fields no row of the scope has: a submit refuses '
'them unless allow_unknown_fields)}. A backfill''s preview takes its set (option set): then '
'"non_object_rows" and "non_object_first" name the rows whose document holds no object where '
'set merges fields in, which the submit refuses unless replace_non_objects. Needs the job''s '
'privilege and SELECT on the target. A NULL p_exclude raises 22023, as the submit does, and so '
'does a key of p_exclude that names no row of the scope unless the option allow_unknown_keys. '
'"judged_at_start": the submit would defer its filter''s judgment to the job''s start (the paths '
'in "unchecked_fields", or, that list empty, a json column''s comparison on a scope with no rows).';
