-- The four-argument version of releases before p_next: gone in the same
-- transaction that creates this one (pgjobs migrate applies every function
-- file in one), so a worker never finds neither. A caller that passes four
-- arguments, a worker of the previous release, gets this one with p_next
-- NULL: the chunks it always got. (A migration dropping it would leave, until
-- the function files commit, a moment in which an export chunk gets 42883
-- and its job fails for good: 42 is no class to retry.)
DROP FUNCTION IF EXISTS pgjobs.export_chunk_sql(bigint, text, integer, text);

CREATE OR REPLACE FUNCTION pgjobs.export_chunk_sql(
    p_id bigint,
    p_after text,
    p_limit integer,
    p_until text DEFAULT NULL,
    p_next text DEFAULT NULL,
    OUT copy_sql text,
    OUT next_after text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- One keyset chunk of export job p_id: the keys of the scope after p_after
-- (NULL: from the start) up to the p_limit-th one, whatever the filter,
-- and never past p_until (NULL: the scope's last key), the upper bound of a
-- part of a parallel export (pgjobs.export_parts).
-- Returns:
--   copy_sql    the complete `COPY (...) TO STDOUT` of the chunk's rows that
--               are in the job's row set (scope, cutoff, filter: the stored
--               predicate) and not masked by a pending delete (pgjobs.mask,
--               evaluated now), in key order, in the job's format;
--   next_after  the chunk's upper key, where the next chunk starts; NULL
--               when this chunk reaches the end of the scope (or p_until).
-- Call it and run the COPY in one REPEATABLE READ transaction per chunk:
-- mask and rows then come from one snapshot, and no snapshot is held for
-- the whole export. p_next: the bound (next_after) an earlier call with the
-- same p_id, p_after, p_limit and p_until returned, which the worker walked
-- ahead while the previous chunk streamed; it is used as it is (checked to
-- advance), and the mask, the privilege checks and the rows stay this
-- call's.
--
-- The bound is an index-only walk of the (scope, key) btree, so a chunk
-- costs p_limit index entries however selective the filter, and the COPY
-- streams straight from the index scan (no sort, no materialisation).
-- Keys compare as ROW(scope, key) as well as plainly: the row comparison is
-- an index condition of the (scope, key) btree only, so the planner does not
-- walk the key's own index across every scope; the plain one gives the btree
-- its start position. (A scope that fits in one chunk has neither bound: its
-- `scope = ...` condition alone is selective enough.)
--
-- Output formats:
--   csv    a header (first chunk only) and one CSV column per requested
--          column or document field (fields as text: strings bare, objects
--          and arrays as JSON), jsonb as JSON text;
--   jsonl  one JSON object per line, keys in the requested order (a column
--          holding an array whose lower bounds are not all 1 as its
--          PostgreSQL text, a JSON string: pgjobs._array_bounds_test). It is sent
--          as a one-column CSV with quote and delimiter bytes (0x01, 0x02)
--          that JSON text never holds raw, so COPY passes it unescaped.
--   parquet  CSV without a header, each column in its wire form for the
--          worker's Parquet writer (pgjobs._parquet_column: epoch
--          microseconds, days, exact text for numeric, JSON for lists, ...).
-- A key column that is no longer NOT NULL raises 55000 (a keyset walk
-- cannot reach NULL keys); so does a scope with rows while the job's typo
-- guard is still pending (payload unchecked_fields: below). Raises P0002 for an unknown job, 22023 for a job that is not an
-- export, a bad cursor or limit. Locks nothing.
-- The work is pgjobs._export_chunk's, which pgjobs.export_chunk_bound shares
-- for the bound alone (a worker's walk ahead).
BEGIN
    SELECT c.copy_sql, c.next_after INTO copy_sql, next_after
      FROM pgjobs._export_chunk(p_id, p_after, p_limit, p_until, p_next, true) c;
END
$$;

COMMENT ON FUNCTION pgjobs.export_chunk_sql(bigint, text, integer, text, text) IS
'One keyset chunk of an export job: copy_sql is the COPY ... TO STDOUT of the job''s rows '
'(not masked by pending deletes) among the next p_limit keys of the scope after p_after (NULL: '
'from the start), in key order and in the job''s format; next_after is where the next chunk '
'starts (NULL: this is the last one; p_until, when given, is the last key of a part of a '
'parallel export; p_next, when given, is next_after as an earlier call with the same '
'arguments returned it, and the keys are not walked again). Run both in one REPEATABLE READ '
'transaction per chunk.';
