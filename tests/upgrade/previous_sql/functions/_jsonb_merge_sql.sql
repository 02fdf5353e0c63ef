CREATE OR REPLACE FUNCTION pgjobs._jsonb_merge_sql(p_base text, p_patch jsonb)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- An SQL expression, of the jsonb expression p_base (SQL text, written by
-- the caller), with the value of pgjobs._jsonb_merge(p_base, p_patch): the
-- patch merged in with the native operators, nothing called per row. Where
-- the base holds an object, its fields are kept and the patch's are added
-- by `||`; a field whose patch value is an object is merged the same way
-- into the base's value of that field; a base that holds no object (SQL
-- NULL, JSON null, a scalar, an array) gives the patch. So a backfill
-- setting {"meta.flag": 1} writes
--   CASE WHEN jsonb_typeof(doc) = 'object' THEN doc || jsonb_build_object('meta',
--       CASE WHEN jsonb_typeof(doc -> 'meta') = 'object'
--            THEN (doc -> 'meta') || '{"flag": 1}' ELSE '{"flag": 1}' END)
--   ELSE '{"meta": {"flag": 1}}' END
-- where the function's recursion cost three PL/pgSQL calls per row (2.6 s
-- of a 4.9 s backfill of 100,000 rows; a plain jsonb_set UPDATE of them
-- took 0.8 s). NULL for a patch that holds more than 64 objects, nests
-- them deeper than 16 levels or would be written in more than about 1 MB:
-- the expression would grow with it (a 64 kB set can nest thousands of
-- levels, or name its objects with keys of thousands of characters), and
-- the caller calls pgjobs._jsonb_merge instead. Every operator and function is written
-- schema-qualified: the expression runs in the caller's statement.
DECLARE
    v_objects integer;
    v_depth integer;
    v_size bigint;
    v_written text;
BEGIN
    IF jsonb_typeof(p_patch) IS DISTINCT FROM 'object' THEN
        RETURN format('%L::jsonb', p_patch::text);
    END IF;
    -- Each object's text holds its place's path about three times, written
    -- out from the document down, and the patch's value there once (what
    -- a base that holds no object gets): keys thousands of characters long
    -- made a 32 kB set of 62 objects an expression of 3.9 MB, stored with
    -- the job and parsed by each page (a 60 kB value 16 levels down, written
    -- once per level, makes 1 MB). Past about 1 MB (estimated, then
    -- measured): NULL.
    WITH RECURSIVE node(value, depth, place) AS (
        SELECT p_patch, 1, 0
        UNION ALL
        SELECT e.value, n.depth + 1, n.place + octet_length(e.key)
          FROM node n, jsonb_each(n.value) e
         WHERE jsonb_typeof(e.value) = 'object' AND n.depth <= 16)
    SELECT count(*), max(depth),
           sum(3 * (32 * depth + place) + octet_length(value::text) + 300)
      INTO v_objects, v_depth, v_size
      FROM node;
    IF v_objects > 64 OR v_depth > 16 OR v_size > 1048576 THEN
        RETURN NULL;
    END IF;
    v_written := pgjobs._jsonb_merge_sql_node(p_base, p_patch);
    RETURN CASE WHEN octet_length(v_written) <= 1048576 THEN v_written END;
END
$$;
