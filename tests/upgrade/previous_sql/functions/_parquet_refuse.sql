CREATE OR REPLACE FUNCTION pgjobs._parquet_refuse(p_column text, p_value text, p_arrow text)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Raises for a value a Parquet column of type p_arrow cannot hold: an
-- infinite date or timestamp, or one past 64 bits of microseconds since
-- 1970 (22008), NaN in a decimal column (22003), an array of more than
-- one dimension or whose lower bound is not 1 in a list column (0A000). A
-- Parquet export's chunk query (pgjobs._parquet_column's wire expression)
-- calls it in place of the value, so the export fails naming the column,
-- the value and what to do, rather than with the conversion's own words
-- ("cannot subtract infinite dates", pyarrow's "not a valid decimal128").
-- Never returns. VOLATILE: its arguments may all be constants ('NaN'), and
-- an IMMUTABLE call of constants is run when the query is planned, failing
-- every chunk whether a row holds the value or not. Locks nothing.
BEGIN
    RAISE EXCEPTION 'column % holds %, which a Parquet % column cannot store', p_column,
                    p_value, p_arrow
        USING ERRCODE = CASE WHEN p_arrow LIKE 'decimal%' THEN '22003'
                             WHEN p_arrow LIKE 'list<%' THEN '0A000' ELSE '22008' END,
        HINT = CASE WHEN p_arrow LIKE 'list<%' AND p_value LIKE 'an array starting at%' THEN
                   format('Export this scope as csv or jsonl (both keep the bounds: csv prints '
                          'the array as PostgreSQL does, jsonl writes such a value as its '
                          'PostgreSQL text, a JSON string), or export a text column holding '
                          '%s::text, which keeps them.', p_column)
               WHEN p_arrow LIKE 'list<%' THEN
                   format('Export this scope as csv or jsonl (csv prints the array as PostgreSQL '
                          'does, jsonl as nested JSON arrays), or export a column of one '
                          'dimension instead of %s.', p_column)
               ELSE
                   format('Export this scope as csv or jsonl (they print %s as PostgreSQL does), or '
                      'leave those rows out with a filter such as {"%s": {"$ne": "%s"}}%s.',
                      p_value, p_column, p_value,
                      CASE WHEN p_arrow LIKE 'decimal%'
                           THEN ', or make the column numeric without a precision (a Parquet '
                                'string)'
                           ELSE '' END) END;
END
$$;
