CREATE OR REPLACE FUNCTION pgjobs._batch_arrays(
    p_noun text,
    p_ids bigint[],
    p_workers text[],
    p_results jsonb[])
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The argument check of a batched completion (pgjobs.complete_many: p_noun
-- 'ids'; pgjobs.complete_items: 'items'): p_ids[i] goes with p_workers[i]
-- and p_results[i], so the arrays have one length (p_results may be NULL:
-- '{}' each), no id or worker name is NULL or empty, and every result is
-- a JSON object. Raises 22023 naming the
-- caller's parameter (p_<p_noun>). Locks nothing.
BEGIN
    IF p_ids IS NULL OR p_workers IS NULL
       OR cardinality(p_ids) <> cardinality(p_workers)
       OR (p_results IS NOT NULL AND cardinality(p_results) <> cardinality(p_ids)) THEN
        RAISE EXCEPTION '%, workers and results must be arrays of one length', p_noun
            USING ERRCODE = '22023',
            HINT = format('Pass p_%s[i] with the worker its claim returned in p_workers[i] '
                          '(and p_results[i], or NULL for ''{}'' each).', p_noun);
    END IF;
    -- A NULL id or worker, or an empty name, names no attempt
    -- (pgjobs._check_holder): 22023, not a silent "not mine".
    IF array_position(p_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION '% must not hold null', p_noun USING ERRCODE = '22023',
            HINT = format('Pass the ids the claim returned in p_%s.', p_noun);
    END IF;
    IF array_position(p_workers, NULL) IS NOT NULL OR '' = ANY (p_workers) THEN
        RAISE EXCEPTION 'every worker name must be non-empty' USING ERRCODE = '22023',
            HINT = 'Pass in p_workers[i] the worker column the claim of p_' || p_noun
                   || '[i] returned.';
    END IF;
    IF p_results IS NOT NULL AND EXISTS (
           SELECT FROM unnest(p_results) r(result)
            WHERE r.result IS NULL OR jsonb_typeof(r.result) <> 'object') THEN
        RAISE EXCEPTION 'every result must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for no result, or p_results NULL.';
    END IF;
END
$$;
