CREATE OR REPLACE FUNCTION pgjobs.submit_export(
    p_target regclass,
    p_scope text,
    p_filter jsonb DEFAULT '{}',
    p_options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- Submits an export of the rows of scope p_scope of p_target that match
-- p_filter and were created at or before now (the cutoff), in key order,
-- to object storage. Rows masked by a pending delete are left out when each
-- chunk is read (pgjobs.export_chunk_sql). A worker (`pgjobs worker`, or
-- `pgjobs export` in-process) streams it; exports never wait for the
-- writer gate.
--
-- Export options (besides the common ones):
--   format       "csv" (default, with a header) | "jsonl" | "parquet"
--   columns      array of column names and/or document field paths (a.b.c);
--                default every column of the table, in table order
--   gzip         boolean, default false
--   destination  URI prefix (file:///abs, s3://, gs://, az://, memory://)
--                under a prefix of the storage allow-list (pgjobs.allow_storage;
--                else 42501); default the worker's own storage
--   chunk_rows   keys per keyset chunk (one short transaction each), 1..1000000,
--                default 50000
--   part_size    bytes of output per uploaded part (the checkpoint grain),
--                1024..1073741824, default 8388608
-- Everything is validated before anything is written (22023). The payload
-- keeps the filter and the resolved output; the predicate column keeps the
-- compiled row set (scope, cutoff, filter). Returns the job id.
-- For pgjobs_client: the caller needs SELECT on the target
-- (42501). Locks nothing beyond the inserted row.
-- SECURITY INVOKER on purpose: current_user here is the role the call acts
-- for (the owner of a SECURITY DEFINER function that calls it, the table
-- owner in a maintenance command, the SET ROLE role), and the SECURITY
-- DEFINER pgjobs._submit_export_as checks that role's rights.
BEGIN
    -- the alias lets in this call's frame after an error (pgjobs._sealed_frame)
    RETURN pgjobs._submit_export_as(current_user, p_target, p_scope, p_filter, p_options) AS sealed_call;
END
$$;

COMMENT ON FUNCTION pgjobs.submit_export(regclass, text, jsonb, jsonb) IS
'Submits an export of the scope''s rows matching the filter, created at or before now, in key '
'order (rows masked by pending deletes are left out). Options: format (csv | jsonl | parquet; '
'parquet takes compression zstd | snappy | none and row_group_bytes), columns '
'(columns and/or document field paths; default all columns), gzip (boolean), destination (URI '
'prefix under a prefix allowed by pgjobs.allow_storage, else 42501; default the worker''s '
'storage), chunk_rows, part_size, allow_unknown_fields (a document field of the filter or of '
'columns that no row of the scope has raises 22023 unless true), plus priority, max_attempts, '
'run_at, lease. Returns the job id; the result holds uri, rows, bytes, sha256, format (and uris '
'for parquet: one file per part).';
