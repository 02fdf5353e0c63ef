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
-- 1,000 rows in key order (pgjobs._scope_keys_at, the read
-- pgjobs._field_guess makes) that differs from p_path's last part and folds like it
-- (pgjobs._field_fold: case, NFKC, invisible characters, white space
-- around), when no such row has p_path's last part itself. "Status" where
-- the rows say "status", "nest.A" for nest.a. NULL otherwise. For
-- backfill's set keys (pgjobs._submit_backfill_as), whose caller has SELECT
-- on the target; not for an import's fields, whose own earlier batches
-- write the rows a later field would be judged by. Locks
-- nothing beyond the read (ACCESS SHARE on the target).
DECLARE
    v_parts text[] := string_to_array(p_path, '.');
    v_last text;
    v_keys text[];
BEGIN
    IF p_reg.document_column IS NULL OR p_path IS NULL OR cardinality(v_parts) = 0 THEN
        RETURN NULL;
    END IF;
    v_last := v_parts[cardinality(v_parts)];
    v_keys := pgjobs._scope_keys_at(p_reg, p_scope, v_parts[1:cardinality(v_parts) - 1]);
    IF v_last = ANY (coalesce(v_keys, '{}')) THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT array_to_string(v_parts[1:cardinality(v_parts) - 1] || k, '.')
              FROM unnest(coalesce(v_keys, '{}')) k
             WHERE pgjobs._field_fold(k) = pgjobs._field_fold(v_last)
             ORDER BY k LIMIT 1);
END
$$;
