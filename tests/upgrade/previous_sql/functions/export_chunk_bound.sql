CREATE OR REPLACE FUNCTION pgjobs.export_chunk_bound(
    p_id bigint,
    p_after text,
    p_limit integer,
    p_until text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The next_after that pgjobs.export_chunk_sql(p_id, p_after, p_limit,
-- p_until) returns, without its copy_sql: what a worker walks ahead on its
-- control connection while the previous chunk streams, then passes to that
-- chunk as p_next. It runs every check the chunk runs before its bound (the
-- job, the limit, the target's trust and the submitter's rights, the columns,
-- the typo guard, the key column, the cursor) and raises as the chunk would;
-- it skips what only the COPY needs: the mask of pending deletes (about half
-- of a chunk's statement), the columns' expressions and the COPY's text. The
-- chunk still evaluates its own mask and checks in its own snapshot, and
-- checks the bound it is given (a key that advances), so a bound walked
-- before a delete was submitted, a grant revoked or the target altered
-- neither shows a doomed row nor bypasses a check. Locks nothing beyond the
-- chunk's own checks (pgjobs._require_same_columns holds the table to the
-- end of the transaction).
DECLARE
    v_next text;
BEGIN
    SELECT c.next_after INTO STRICT v_next
      FROM pgjobs._export_chunk(p_id, p_after, p_limit, p_until, NULL, false) c;
    RETURN v_next;
END
$$;

COMMENT ON FUNCTION pgjobs.export_chunk_bound(bigint, text, integer, text) IS
'The next_after that export_chunk_sql returns for the same arguments (NULL: the chunk reaches '
'the end of the scope, or p_until), with the same checks, without building the chunk''s COPY '
'or evaluating its mask: a worker walks it ahead and passes it to export_chunk_sql as p_next.';
