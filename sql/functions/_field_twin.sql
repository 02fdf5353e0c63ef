CREATE OR REPLACE FUNCTION pgjobs._field_twin(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_path text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The document path of the scope's rows that p_path (a path that is no
-- column) only looks like: a key at p_path's place in the scope's first
-- 1,000 rows in key order (the (scope, key) index, as pgjobs._field_guess
-- reads them) that differs from p_path's last part and folds like it
-- (pgjobs._field_fold: case, NFKC, invisible characters, white space
-- around), when no such row has p_path's last part itself. "Status" where
-- the rows say "status", "nest.A" for nest.a. NULL otherwise. For
-- backfill's set keys (pgjobs._submit_backfill_as), whose caller has SELECT
-- on the target; not for an import's fields, whose own earlier batches
-- write the rows a later field would be judged by. Locks
-- nothing beyond the read (ACCESS SHARE on the target).
DECLARE
    v_parts text[] := string_to_array(p_path, '.');
    v_ref text;
    v_seg text;
    v_last text;
    v_keys text[];
BEGIN
    IF p_reg.document_column IS NULL OR p_path IS NULL OR cardinality(v_parts) = 0 THEN
        RETURN NULL;
    END IF;
    v_ref := format('(t.%I)::pg_catalog.jsonb', p_reg.document_column);
    FOREACH v_seg IN ARRAY v_parts[1:cardinality(v_parts) - 1] LOOP
        v_ref := v_ref || format(' -> %L', v_seg);
    END LOOP;
    v_last := v_parts[cardinality(v_parts)];
    EXECUTE format(
        'SELECT array_agg(DISTINCT k.k ORDER BY k.k) FROM (SELECT %s AS d FROM %s t '
        'WHERE t.%I = %s ORDER BY t.%I LIMIT 1000) s, '
        'LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(s.d) = ''object'' THEN s.d '
        'ELSE ''{}''::jsonb END) AS k(k)',
        v_ref, p_reg.target, p_reg.scope_column, pgjobs._scope_literal(p_reg, p_scope),
        p_reg.key_column)
       INTO v_keys;
    IF v_last = ANY (coalesce(v_keys, '{}')) THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT array_to_string(v_parts[1:cardinality(v_parts) - 1] || k, '.')
              FROM unnest(coalesce(v_keys, '{}')) k
             WHERE pgjobs._field_fold(k) = pgjobs._field_fold(v_last)
             ORDER BY k LIMIT 1);
END
$$;
