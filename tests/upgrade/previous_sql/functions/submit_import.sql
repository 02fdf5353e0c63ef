CREATE OR REPLACE FUNCTION pgjobs.submit_import(
    p_target regclass,
    p_scope text,
    p_source text,
    p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Submits an import of the object p_source (csv with a header row, or
-- jsonl; gzip or not) into scope p_scope of p_target: a writing job, gated
-- like delete and backfill, run by `pgjobs worker` (or `pgjobs import`
-- in-process), which streams the source in batches, each committed with
-- the byte offset it reached (docs/imports.md). Everything is validated
-- before anything is written. Returns the job id.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for, and the SECURITY DEFINER pgjobs._submit_import_as checks that
-- role's rights (INSERT on the target; UPDATE too for on_duplicate update).
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._submit_import_as(current_user, p_target, p_scope, p_source, p_options) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.submit_import(regclass, text, text, jsonb) IS
'Submits an import of p_source (file://, s3://, gs://, az://, https:// under a prefix allowed '
'by pgjobs.allow_storage, else 42501) into the scope. Options: format (csv with a header | '
'jsonl; default from the name), gzip (default: the name ends in .gz), on_duplicate (error | '
'skip | update, on (scope, key)), max_rejects (default 0), batch_ms, allow_unknown_fields, '
'replace_non_objects (update: replace a string, number, boolean or array where the record''s '
'document fields merge in an object; the record is rejected otherwise), plus priority, max_attempts, run_at, '
'on_conflict, lease. The caller needs INSERT (and UPDATE for update) on the target. Returns the '
'job id; the result holds rows, inserted, updated, bytes, skipped, rejected (and rejects_uri).';
