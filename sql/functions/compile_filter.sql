CREATE OR REPLACE FUNCTION pgjobs.compile_filter(p_target regclass, p_filter jsonb)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $function$
-- Compile a filter (docs/filters.md) into a boolean SQL expression over the
-- target's unqualified column names, e.g. for
-- `SELECT ... FROM target WHERE <expr>` or the mask `NOT coalesce((<expr>), false)`.
-- Every value is inlined as a quoted literal with an explicit cast, every
-- identifier through %I, so the text is self-contained and injection-proof.
-- NULL in the result means "not matched". Locks nothing.
-- Raises 22023 naming the offending key or operator; limits: 64 KiB of filter
-- text, depth 16, 1,000 clauses, 10,000 values per $in/$nin.
DECLARE
    v_reg     pgjobs.target_registry;
    v_columns jsonb;
    v_sql     text;
BEGIN
    v_reg := pgjobs._target(p_target);

    IF p_filter IS NULL OR jsonb_typeof(p_filter) <> 'object' THEN
        RAISE EXCEPTION 'a filter must be a JSON object, got %', coalesce(p_filter::text, 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'Use {} to match every row, e.g. {"status": "done", "age": {"$gt": 30}}.';
    END IF;
    IF octet_length(p_filter::text) > 65536 THEN
        RAISE EXCEPTION 'filter is too large: % bytes (the limit is 65536)',
                        octet_length(p_filter::text)
            USING ERRCODE = '22023',
                  HINT = 'Split the work into several jobs, or select the rows by a column '
                         'instead of listing many values.';
    END IF;

    -- Column name -> the SQL type its filter values are cast to, as
    -- format_type() spells it (safe to inline): the column's type without
    -- its modifiers (typmod -1: 'bpchar', 'numeric', '"bit"'; never the bare
    -- name 'character', which is char(1)). So a value compares as it would
    -- in plain SQL (amount > '1.005'): cast to numeric(6,2) it would round
    -- to 1.01, cast to char(8) 'acme0001x' would truncate to 'acme0001',
    -- and the filter would cover other rows.
    SELECT coalesce(jsonb_object_agg(a.attname, format_type(a.atttypid, -1)), '{}')
      INTO v_columns
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_target AND a.attnum > 0 AND NOT a.attisdropped;

    SELECT n.p_sql INTO v_sql
      FROM pgjobs._compile_filter_node(p_filter, v_columns, v_reg.document_column, 1, 0) n;
    RETURN v_sql;
END
$function$;

COMMENT ON FUNCTION pgjobs.compile_filter(regclass, jsonb) IS
'Compile a pgjobs filter (jsonb) for a registered target into a boolean SQL expression over the '
'target''s unqualified column names, with every value quoted and cast. {} compiles to true. '
'Malformed filters raise 22023 naming the key or operator. See docs/filters.md.';
