CREATE OR REPLACE FUNCTION pgjobs._json_values_deferred(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_filter jsonb)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether the value check of filter p_filter (pgjobs._require_value_types)
-- cannot be judged now and is deferred to the job's start with an empty
-- unchecked_fields list: it compares a json or jsonb column
-- (pgjobs._risky_operands) and scope p_scope (canonical) has no row to
-- judge it by. The one rule of pgjobs._judge_filter (which defers) and
-- pgjobs.preview (which says the submit would: "judged_at_start"), so the
-- two cannot disagree. The caller has checked the scope
-- (pgjobs._require_scope). One index probe of (scope, key), only for such a
-- filter. Locks nothing.
DECLARE
    v_columns jsonb;
    v_empty boolean;
BEGIN
    SELECT coalesce(jsonb_object_agg(a.attname,
               CASE WHEN pgjobs._base_type(a.atttypid) IN ('json'::regtype, 'jsonb'::regtype)
                    THEN to_jsonb('json'::text) ELSE to_jsonb(true) END), '{}')
      INTO v_columns
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT EXISTS (SELECT 1 FROM pgjobs._risky_operands(p_filter, v_columns) r
                    WHERE v_columns ->> r.path = 'json') THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT NOT EXISTS (SELECT FROM %s t WHERE t.%I OPERATOR(pg_catalog.=) %s)',
                   p_reg.target, p_reg.scope_column, pgjobs._scope_literal(p_reg, p_scope))
       INTO v_empty;
    RETURN v_empty;
END
$$;
