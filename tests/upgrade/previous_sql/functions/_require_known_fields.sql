CREATE OR REPLACE FUNCTION pgjobs._require_known_fields(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_paths text[],
    p_options jsonb,
    p_what text DEFAULT 'filter')
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The typo guard (pgjobs._judge_fields) for a caller that has nowhere to
-- defer to: a path no row of scope p_scope has is refused with 22023
-- naming it (p_what: what named it), unless p_options says
-- {"allow_unknown_fields": true}; a scope without rows passes. The three
-- submits call pgjobs._judge_fields itself, which also returns the paths an
-- empty scope leaves to the job's start. Locks nothing.
BEGIN
    PERFORM pgjobs._judge_fields(p_reg, p_scope, p_paths, p_options, p_what);
END
$$;
