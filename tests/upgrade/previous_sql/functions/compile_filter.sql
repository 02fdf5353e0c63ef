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
BEGIN
    RETURN (pgjobs._compile_filter(p_target, p_filter)).p_sql;
END
$function$;

COMMENT ON FUNCTION pgjobs.compile_filter(regclass, jsonb) IS
'Compile a pgjobs filter (jsonb) for a registered target into a boolean SQL expression over the '
'target''s unqualified column names, with every value quoted and cast. {} compiles to true. '
'Malformed filters raise 22023 naming the key or operator. See docs/filters.md.';
