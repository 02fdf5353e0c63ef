CREATE OR REPLACE FUNCTION pgjobs._judge_filter(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_filter jsonb,
    p_paths text[],
    p_options jsonb)
RETURNS text[]
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The judgment of a job's filter p_filter (document paths p_paths, from the
-- compiler) at its submit, the one call of submit_delete, submit_backfill
-- and submit_export: the typo guard (pgjobs._judge_fields: a path no row of
-- scope p_scope, canonical, has is refused with 22023, or deferred when the
-- scope has no row), then, once judged against rows, its twin for values
-- (pgjobs._require_value_types: a $ne, $nin or negated comparison whose
-- operand's JSON type no row holds at the path is refused with 22023).
-- Returns the deferred paths (NULL: judged). A deferred filter is judged
-- whole, both checks, when the job starts (pgjobs._unchecked_fields_problem,
-- at a delete's or backfill's page and an export's claim); pgjobs.preview
-- asks the value check as well. The value check ran at the submits of a
-- delete and a backfill only: an export's filter, a job submitted on an
-- empty scope and a preview went unchecked. {"allow_unknown_fields": true}
-- lets both through. Locks nothing.
DECLARE
    v_unchecked text[];
BEGIN
    v_unchecked := pgjobs._judge_fields(p_reg, p_scope, p_paths, p_options);
    IF v_unchecked IS NULL THEN
        PERFORM pgjobs._require_value_types(p_reg, p_scope, p_filter, p_options);
    END IF;
    RETURN v_unchecked;
END
$$;
