-- The signature before p_before (an import judges by the rows from before the
-- job): gone in the transaction that creates this one (pgjobs migrate
-- applies every function file in one), with its callers' new versions;
-- the previous release's functions call it until then.
DROP FUNCTION IF EXISTS pgjobs._scope_keys_at(pgjobs.target_registry, text, text[]);

CREATE OR REPLACE FUNCTION pgjobs._scope_keys_at(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_parent text[],
    p_before timestamptz)
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
-- those rows holds an object there. p_before, when not NULL: the first
-- 1,000 of the rows whose created_at is at or before it (a job's cutoff:
-- the rows from before the job; an import's own rows are dated by its
-- batches, after it), picked before the limit, so rows written since
-- (its own earlier batches, another writer) with smaller keys never take
-- their places. The one read behind the typo guard's hint
-- (pgjobs._field_guess) and the look-alike test of backfill's set keys and
-- an import's fields (pgjobs._field_twin). Locks nothing beyond the read
-- (ACCESS SHARE on the target).
DECLARE
    v_ref text := format('(t.%I)::pg_catalog.jsonb', p_reg.document_column);
    v_seg text;
    v_keys text[];
    v_before text := 'true';
BEGIN
    FOREACH v_seg IN ARRAY coalesce(p_parent, '{}') LOOP
        v_ref := v_ref || format(' -> %L', v_seg);
    END LOOP;
    IF p_before IS NOT NULL THEN
        -- As a job's cutoff is compared (pgjobs._cutoff_clause): a
        -- `timestamp` created_at holds wall-clock time in the target's
        -- created_at_time_zone.
        v_before := format('t.%I <= %s', p_reg.created_at_column, pgjobs._time_literal(p_before,
            (SELECT pgjobs._base_type(a.atttypid) = 'timestamp'::regtype
               FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = p_reg.target AND a.attname = p_reg.created_at_column),
            coalesce(p_reg.options ->> 'created_at_time_zone', 'UTC')));
    END IF;
    EXECUTE format(
        'SELECT array_agg(DISTINCT k.k ORDER BY k.k) FROM (SELECT %s AS d FROM %s t '
        'WHERE t.%I = %s AND %s ORDER BY t.%I LIMIT 1000) s, '
        'LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(s.d) = ''object'' THEN s.d '
        'ELSE ''{}''::jsonb END) AS k(k)',
        v_ref, p_reg.target, p_reg.scope_column, pgjobs._scope_literal(p_reg, p_scope),
        v_before, p_reg.key_column)
       INTO v_keys;
    RETURN v_keys;
END
$$;
