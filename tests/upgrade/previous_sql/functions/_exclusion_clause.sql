CREATE OR REPLACE FUNCTION pgjobs._exclusion_clause(
    p_key_column name,
    p_key_type text,
    p_keys text[],
    p_job bigint,
    p_count boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The condition "the key is one of p_keys" of a delete's exclude list, as
-- SQL over the target's unqualified key column p_key_column, of the key's
-- full type p_key_type (format_type); p_keys are canonical text
-- (pgjobs._canonical_text). The predicate holds NOT (<this>), the read
-- path's short cut (pgjobs._mask_candidates) ORs it in. Two forms:
-- * the keys, an array literal: <key> = ANY ('{...}'::<type>[]), compared
--   with the key column's own equality (and collation). The planner
--   estimates it one element at a time (a few microseconds each) in every
--   statement that holds it: 0.2-0.5 s per page and per read at 100,000 keys.
-- * p_keys NULL and a job: the keys that job's submit stored in
--   pgjobs.job_exclusions (pgjobs._row_selection decides when: more than
--   100 keys, of a key type whose text is its identity), probed row by row
--   on that table's primary key:
--   EXISTS (SELECT FROM pgjobs.job_exclusions x
--            WHERE x.job_id = <job> AND x.key = (<key>::text COLLATE "C") OFFSET 0)
--   (OFFSET 0 keeps the planner from turning it into a hashed sub-plan,
--   which would read the whole list in every statement: a page or a
--   visible page reads a few rows, and the planner, which costs the scan
--   under the LIMIT as if it ran to the end, would hash the list for them)
--   Its text and its planning do not grow with the list, and a row costs
--   one index probe whatever its length. Only for keys whose ::text is the
--   canonical text in every session and equal texts are equal keys
--   (integers, uuid, text and varchar of a deterministic collation).
--   A key column named job_id or key would resolve, inside the sub-select,
--   to the list's own column (every row excluded, or none): the list's
--   columns are then renamed, x (x_job_id, x_key).
--   p_count: the form for a statement that reads the whole scope (a count,
--   pgjobs.visible_count, pgjobs.preview): the same sub-select without
--   OFFSET 0, so that the planner may read the list once into a hash
--   table (hashed SubPlan) instead of probing it once per row; it still
--   probes row by row when it expects few rows, or when it expects the
--   list not to fit in hash_mem (work_mem * hash_mem_multiplier).
-- NULL when p_keys is empty. Locks nothing.
DECLARE
    v_job text := 'job_id';
    v_key text := 'key';
BEGIN
    IF p_keys IS NULL AND p_job IS NOT NULL THEN
        IF p_key_column IN ('job_id', 'key') THEN
            v_job := 'x_job_id';
            v_key := 'x_key';
        END IF;
        RETURN format('EXISTS (SELECT FROM pgjobs.job_exclusions x%s WHERE x.%I '
                      'OPERATOR(pg_catalog.=) %s AND x.%I OPERATOR(pg_catalog.=) '
                      '(%I::pg_catalog.text COLLATE "C")%s)',
                      CASE WHEN v_job = 'job_id' THEN ''
                           ELSE format(' (%I, %I)', v_job, v_key) END,
                      v_job, p_job, v_key, p_key_column,
                      CASE WHEN p_count THEN '' ELSE ' OFFSET 0' END);
    ELSIF coalesce(cardinality(p_keys), 0) = 0 THEN
        RETURN NULL;
    END IF;
    RETURN format('%I OPERATOR(pg_catalog.=) ANY (%L::%s[])', p_key_column, p_keys,
                  pgjobs._type_sql(p_key_type));
END
$$;
