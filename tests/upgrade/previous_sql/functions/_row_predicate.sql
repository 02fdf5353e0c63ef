CREATE OR REPLACE FUNCTION pgjobs._row_predicate(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_filter jsonb,
    p_exclude text[],
    p_cutoff timestamptz)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The exact row set of a delete or backfill job, as one SQL boolean over
-- the target's unqualified columns: the scope, created at or before the
-- cutoff, matching the filter, key not excluded. Values are inlined as
-- quoted, typed literals, so the text is self-contained: it is stored in
-- pgjobs.jobs.predicate and used verbatim by the runner's pages and by the
-- read mask, which therefore cover exactly the same rows.
-- A `timestamp` (without time zone) created_at column is compared with the
-- cutoff in the submitting session's time zone. Literals are written in
-- ISO 8601 so the runner's DateStyle cannot change their meaning. Raises 22023 for a bad
-- scope, filter or exclusion. Locks nothing.
DECLARE
    v_exclude text;
    v_cutoff text;
BEGIN
    IF p_exclude IS NULL THEN
        p_exclude := '{}';
    END IF;
    IF cardinality(p_exclude) > 100000 THEN
        RAISE EXCEPTION 'exclude lists % keys; the limit is 100000', cardinality(p_exclude)
            USING ERRCODE = '22023',
            HINT = 'Exclude rows with a filter instead, e.g. {"$not": {...}}.';
    END IF;
    IF array_position(p_exclude, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'exclude must not contain null' USING ERRCODE = '22023',
            HINT = 'List the keys of the rows to keep.';
    END IF;
    IF cardinality(p_exclude) > 0 THEN
        BEGIN
            -- Canonical text of each key (see pgjobs._typed_literal).
            EXECUTE format('SELECT %L::text[]::%s[]', p_exclude, p_reg.key_type::text);
            EXECUTE format('SELECT array_agg(e #>> ''{}'') FROM jsonb_array_elements('
                           'to_jsonb(%L::text[]::%s[])) e', p_exclude, p_reg.key_type::text)
               INTO p_exclude;
            v_exclude := format('%L::%s[]', p_exclude, p_reg.key_type::text);
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION 'exclude holds a value that is not a valid % (key column %)',
                p_reg.key_type, p_reg.key_column
                USING ERRCODE = '22023', HINT = 'List keys of the rows to keep, as text.';
        END;
    END IF;
    v_cutoff := CASE WHEN p_reg.created_at_column IS NOT NULL
        AND (SELECT a.atttypid FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = p_reg.target AND a.attname = p_reg.created_at_column)
            = 'timestamp'::regtype
        THEN format('%L::timestamp', to_char(p_cutoff::timestamp, 'YYYY-MM-DD"T"HH24:MI:SS.US'))
        ELSE format('%L::timestamptz',
                    to_char(p_cutoff AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) END;

    RETURN format('%I = %s AND %I <= %s AND (%s)%s',
        p_reg.scope_column, pgjobs._scope_literal(p_reg, p_scope),
        p_reg.created_at_column, v_cutoff,
        pgjobs.compile_filter(p_reg.target, coalesce(p_filter, '{}')),
        CASE WHEN v_exclude IS NULL THEN ''
             ELSE format(' AND NOT (%I = ANY (%s))', p_reg.key_column, v_exclude) END);
END
$$;
