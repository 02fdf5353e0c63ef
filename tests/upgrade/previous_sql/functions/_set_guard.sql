CREATE OR REPLACE FUNCTION pgjobs._set_guard(
    p_reg pgjobs.target_registry,
    p_set jsonb,
    OUT p_ok text,
    OUT p_blocker text)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Where a backfill's p_set may write the document. Its document fields are
-- merged in (pgjobs._compile_set): every object of the patch they make (the
-- document itself, each parent of a dotted key, each object inside a value:
-- {"a.b": 1} and {"a": {"b": 1}} are one patch) is merged into what the row
-- holds there. A row holding something else there (a string, number,
-- boolean or array; a path never indexes into an array) would have that
-- value replaced by an object, a value the set does not name: MongoDB
-- refuses the same ("Cannot create field 'x' in element"). A missing
-- field, JSON null or a SQL NULL document becomes an object, as before.
-- p_ok: a boolean SQL expression over the target's unqualified columns,
-- true for a row whose every such place holds an object, JSON null or
-- nothing; NULL when p_set writes no document field (nothing to guard).
-- p_blocker: for a row where p_ok is false, the first such place (shallow
-- first) as a JSON array [path, JSON type] ("" for the document itself).
-- The submit refuses rows it finds (pgjobs._set_blocked_rows), and each
-- page leaves such rows unchanged and counts them (pgjobs._run_page)
-- unless the job says replace_non_objects. Locks nothing.
DECLARE
    v_patch jsonb := '{}'::jsonb;
    v_key text;
    v_value jsonb;
    v_path text[];
    v_ref text;
    v_seg text;
    v_clause text;
    v_oks text[] := '{}'::text[];
    v_whens text[] := '{}'::text[];
BEGIN
    IF p_reg.document_column IS NULL OR jsonb_typeof(p_set) IS DISTINCT FROM 'object' THEN
        RETURN;
    END IF;
    FOR v_key, v_value IN
        SELECT s.key, s.value FROM jsonb_each(p_set) s
         WHERE s.key IS DISTINCT FROM p_reg.document_column::text
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                            WHERE a.attrelid = p_reg.target AND a.attname = s.key
                              AND a.attnum > 0 AND NOT a.attisdropped)
         ORDER BY s.key
    LOOP
        v_patch := pgjobs._jsonb_merge(v_patch,
                                       pgjobs._jsonb_nest(string_to_array(v_key, '.'), v_value));
    END LOOP;
    IF v_patch = '{}'::jsonb THEN
        RETURN;  -- columns only
    END IF;
    FOR v_path IN
        WITH RECURSIVE node(path, value) AS (
            SELECT '{}'::text[], v_patch
            UNION ALL
            SELECT n.path || e.key, e.value
              FROM node n
             CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(n.value) = 'object'
                                                THEN n.value ELSE '{}'::jsonb END) e)
        SELECT n.path FROM node n
         WHERE jsonb_typeof(n.value) = 'object'
         ORDER BY cardinality(n.path), n.path
    LOOP
        v_ref := format('%I', p_reg.document_column);
        FOREACH v_seg IN ARRAY v_path LOOP
            v_ref := v_ref || format(' OPERATOR(pg_catalog.->) %L::pg_catalog.text', v_seg);
        END LOOP;
        v_clause := format('coalesce(pg_catalog.jsonb_typeof(%s) OPERATOR(pg_catalog.=) '
                           'ANY (''{object,"null"}''::pg_catalog.text[]), true)', v_ref);
        v_oks := v_oks || v_clause;
        v_whens := v_whens || format('WHEN NOT %s THEN pg_catalog.jsonb_build_array(%L::pg_catalog.text, '
                                     'pg_catalog.jsonb_typeof(%s))', v_clause,
                                     array_to_string(v_path, '.'), v_ref);
    END LOOP;
    p_ok := '(' || array_to_string(v_oks, ' AND ') || ')';
    p_blocker := 'CASE ' || array_to_string(v_whens, ' ') || ' END';
END
$$;
