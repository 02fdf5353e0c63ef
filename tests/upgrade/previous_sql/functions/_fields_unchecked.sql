CREATE OR REPLACE FUNCTION pgjobs._fields_unchecked(
    p_reg pgjobs.target_registry,
    p_scope text,
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
-- The document paths p_paths of a job on scope p_scope (canonical text)
-- that the typo guard (pgjobs._require_known_fields) cannot judge at the
-- submit because the scope has no row yet, distinct and sorted; NULL when
-- there is nothing left to judge: no document column, no path, the option
-- {"allow_unknown_fields": true}, or a scope that has rows (the guard
-- judged them). An empty scope does not mean the job will change nothing:
-- a job judges rows by their created_at, and rows dated at or before its
-- cutoff may arrive before it runs (an import queued ahead of it in the
-- scope's gate, whose source carries created_at; an application restoring
-- rows). A misspelt `{"stauts": {"$ne": "keep"}}` would then select every
-- one of them. pgjobs.preview reports the list (what a job submitted now
-- would defer). The submits do not ask this: a probe before the guard's
-- walk let a scope emptied between the two looks (an application's own
-- DELETE) pass as neither judged nor deferred; they take the list from the
-- walk that judged (pgjobs._judge_fields). The scope is checked against
-- pgjobs.allowed_scopes first
-- (42501). One index probe of (scope, key). Locks nothing.
DECLARE
    v_paths text[];
    v_any boolean;
BEGIN
    IF p_reg.document_column IS NULL OR p_paths IS NULL
       OR (jsonb_typeof(p_options) = 'object'
           AND p_options -> 'allow_unknown_fields' = 'true'::jsonb) THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(DISTINCT p ORDER BY p) INTO v_paths FROM unnest(p_paths) p
     WHERE p IS NOT NULL;
    IF v_paths IS NULL THEN
        RETURN NULL;
    END IF;
    -- Not even a probe of a scope the session may not act on (42501).
    PERFORM pgjobs._require_scope(p_reg.target, p_scope);
    EXECUTE format('SELECT EXISTS (SELECT FROM %s t WHERE t.%I = %s)', p_reg.target,
                   p_reg.scope_column, pgjobs._scope_literal(p_reg, p_scope))
       INTO v_any;
    RETURN CASE WHEN v_any THEN NULL ELSE v_paths END;
END
$$;
