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
-- A filter whose only judged keys are json or jsonb columns (no document
-- path, or a target without a document column) on a scope with no row is
-- deferred too, with an empty list ('{}'): the typo guard has no path to
-- defer, but the value check has nothing to judge by, and rows that came
-- later were read unjudged ({"meta": {"$ne": "1"}} took every row whose
-- meta holds an object). pgjobs._unchecked_fields_problem judges it once
-- the scope has a row.
DECLARE
    v_unchecked text[];
BEGIN
    v_unchecked := pgjobs._judge_fields(p_reg, p_scope, p_paths, p_options);
    IF v_unchecked IS NOT NULL
       OR coalesce(pgjobs._option_bool('allow_unknown_fields',
                                       CASE WHEN jsonb_typeof(p_options) = 'object'
                                            THEN p_options -> 'allow_unknown_fields' END),
                   false) THEN
        RETURN v_unchecked;
    END IF;
    -- Before any row is read: a json column's check reads rows the typo
    -- guard (which checks the scope only when it has a path to walk) never
    -- read, and its refusal names the types they hold, so a scope outside
    -- pgjobs.allowed_scopes answered 22023 "they hold: object" where it
    -- must answer 42501.
    PERFORM pgjobs._require_scope(p_reg.target, p_scope);
    -- (pgjobs._json_values_deferred: the rule pgjobs.preview reports.)
    IF pgjobs._json_values_deferred(p_reg, p_scope, p_filter) THEN
        RETURN '{}'::text[];
    END IF;
    PERFORM pgjobs._require_value_types(p_reg, p_scope, p_filter, p_options);
    RETURN NULL;
END
$$;
