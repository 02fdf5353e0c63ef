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
-- text, depth 16, 1,000 clauses, 10,000 values per $in/$nin and 10,000 in
-- all $in/$nin lists together, 32 $contains operators of 256 bytes of
-- operands together. These caps bound a filter's cost per row:
-- a `SET statement_timeout` on a function does not re-arm the timer of the
-- statement already running, so operators set statement_timeout on client
-- roles (docs/filters.md, "Limits").
DECLARE
    v_reg     pgjobs.target_registry;
    v_columns jsonb;
    v_sql     text;
    v_values  bigint;
    v_contains bigint;
    v_contains_bytes bigint;
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
    -- Every $in / $nin list at any depth (a "$in" key inside a value counts
    -- too: the cap errs on the safe side).
    SELECT coalesce(sum(jsonb_array_length(l)), 0) INTO v_values
      FROM jsonb_path_query(p_filter,
               'strict $.** ? (@.type() == "object").* ? (@.type() == "object")') o,
           LATERAL (SELECT o -> '$in' UNION ALL SELECT o -> '$nin') v(l)
     WHERE jsonb_typeof(l) = 'array';
    IF v_values > 10000 THEN
        RAISE EXCEPTION 'filter lists % values in $in / $nin (the limit is 10000 in all)',
                        v_values
            USING ERRCODE = '22023',
                  HINT = 'Split the work into several jobs, or select the rows by a column '
                         'instead of listing many values.';
    END IF;
    -- Every $contains at any depth, and its operands' bytes: each is an ILIKE
    -- over the row's text, whose cost grows with the text and the pattern, and
    -- unlike $in it cannot be hashed.
    SELECT count(*), coalesce(sum(octet_length(c #>> '{}')), 0)
      INTO v_contains, v_contains_bytes
      FROM jsonb_path_query(p_filter,
               'strict $.** ? (@.type() == "object").* ? (@.type() == "object")') o,
           LATERAL (SELECT o -> '$contains') v(c)
     WHERE c IS NOT NULL;
    IF v_contains > 32 OR v_contains_bytes > 256 THEN
        RAISE EXCEPTION 'filter has % $contains operators of % bytes in all '
                        '(the limits are 32 operators and 256 bytes)',
                        v_contains, v_contains_bytes
            USING ERRCODE = '22023',
                  HINT = 'Use fewer, shorter substrings, or select the rows by an equality '
                         '($eq / $in) on a column or field instead.';
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
