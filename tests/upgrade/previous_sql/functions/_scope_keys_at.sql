CREATE OR REPLACE FUNCTION pgjobs._scope_keys_at(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_parent text[])
RETURNS text[]
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The keys of the objects at document path p_parent ('{}': the document
-- itself) in the first 1,000 rows of scope p_scope (canonical text) in key
-- order (the (scope, key) index), distinct and sorted; NULL when none of
-- those rows holds an object there. The one read behind the typo guard's
-- hint (pgjobs._field_guess) and backfill's look-alike test
-- (pgjobs._field_twin). Locks nothing beyond the read (ACCESS SHARE on the
-- target).
DECLARE
    v_ref text := format('(t.%I)::pg_catalog.jsonb', p_reg.document_column);
    v_seg text;
    v_keys text[];
BEGIN
    FOREACH v_seg IN ARRAY coalesce(p_parent, '{}') LOOP
        v_ref := v_ref || format(' -> %L', v_seg);
    END LOOP;
    EXECUTE format(
        'SELECT array_agg(DISTINCT k.k ORDER BY k.k) FROM (SELECT %s AS d FROM %s t '
        'WHERE t.%I = %s ORDER BY t.%I LIMIT 1000) s, '
        'LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(s.d) = ''object'' THEN s.d '
        'ELSE ''{}''::jsonb END) AS k(k)',
        v_ref, p_reg.target, p_reg.scope_column, pgjobs._scope_literal(p_reg, p_scope),
        p_reg.key_column)
       INTO v_keys;
    RETURN v_keys;
END
$$;
