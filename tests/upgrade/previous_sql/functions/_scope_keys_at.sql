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
-- 1,000 of the rows from before it (a job's cutoff: the rows from before
-- the job; an import's own rows are dated by its batches, after it),
-- picked before the limit, so rows written since (its own earlier
-- batches, another writer) with smaller keys never take their places.
-- From before it: created_at at or before it, or NULL where the column
-- has a default (its own, or its domain's: an import not naming the
-- column dates its rows by it, so a NULL row is one written otherwise,
-- an old row in most schemas; without one the job's own rows are NULL
-- too and NULL rows do not count). Bounded: only the scope's first
-- 10,000 rows in key order are visited (a scope that grew by millions
-- since the cutoff, rows of smaller keys, was walked row by row, once per
-- new field); when fewer than 1,000 of them are from before, the keys are
-- those of the ones that are (NULL when none): the caller judges with
-- what was read. The one read behind the typo guard's hint
-- (pgjobs._field_guess) and the look-alike test of backfill's set keys and
-- an import's fields (pgjobs._field_twin). Locks nothing beyond the read
-- (ACCESS SHARE on the target).
DECLARE
    v_ref text := format('(t.%I)::pg_catalog.jsonb', p_reg.document_column);
    v_seg text;
    v_keys text[];
    v_before text := 'true';
    v_without_zone boolean;
    v_dated boolean;
    v_rows text;
BEGIN
    FOREACH v_seg IN ARRAY coalesce(p_parent, '{}') LOOP
        v_ref := v_ref || format(' -> %L', v_seg);
    END LOOP;
    -- The scope's rows in key order: the first 1,000 of them, or (p_before)
    -- of its first 10,000 those from before p_before.
    v_rows := format('SELECT %s AS d FROM %s t WHERE t.%I = %s ORDER BY t.%I LIMIT 1000',
                     v_ref, p_reg.target, p_reg.scope_column,
                     pgjobs._scope_literal(p_reg, p_scope), p_reg.key_column);
    IF p_before IS NOT NULL THEN
        SELECT pgjobs._base_type(a.atttypid) = 'timestamp'::regtype,
               -- (the column's own default, else its domain's; a column
               -- DEFAULT NULL over a domain with one is kept as NULL::domain)
               coalesce((SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) !~* '^NULL\M'
                           FROM pg_catalog.pg_attrdef d
                          WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum),
                        (SELECT y.typdefault !~* '^NULL\M' FROM pg_catalog.pg_type y
                          WHERE y.oid = a.atttypid),
                        false)
          INTO v_without_zone, v_dated
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = p_reg.target AND a.attname = p_reg.created_at_column;
        -- As a job's cutoff is compared (pgjobs._cutoff_clause): a
        -- `timestamp` created_at holds wall-clock time in the target's
        -- created_at_time_zone.
        v_before := format('t.%I <= %s', p_reg.created_at_column, pgjobs._time_literal(p_before,
            v_without_zone, coalesce(p_reg.options ->> 'created_at_time_zone', 'UTC')));
        IF v_dated THEN
            v_before := format('(%s OR t.%I IS NULL)', v_before, p_reg.created_at_column);
        END IF;
        -- (the visit's bound first, by the (scope, key) index; the filter
        -- and the limit over what it visited, in the same order)
        v_rows := format(
            'SELECT t.d FROM (SELECT %s AS d, %s AS b, t.%I AS k FROM %s t WHERE t.%I = %s '
            'ORDER BY t.%I LIMIT 10000) t WHERE t.b ORDER BY t.k LIMIT 1000',
            v_ref, v_before, p_reg.key_column, p_reg.target, p_reg.scope_column,
            pgjobs._scope_literal(p_reg, p_scope), p_reg.key_column);
    END IF;
    EXECUTE format(
        'SELECT array_agg(DISTINCT k.k ORDER BY k.k) FROM (%s) s, '
        'LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(s.d) = ''object'' THEN s.d '
        'ELSE ''{}''::jsonb END) AS k(k)', v_rows)
       INTO v_keys;
    RETURN v_keys;
END
$$;
