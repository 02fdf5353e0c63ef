CREATE OR REPLACE FUNCTION pgjobs._column_collate(p_target regclass, p_column name)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- ' COLLATE "schema"."name"': the collation of column p_column of
-- p_target, for a comparison of two literals of the column's type that
-- must order them as the column does; '' for a type without collation.
-- Two literals cast to the column's type (pgjobs._column_type) compare
-- under the database's default collation, not the column's: for a key
-- under an ICU collation ('en-US' orders '-c2' before '_d1', "C" after)
-- the check that a page's cursor moves forward saw it move back, and
-- failed the job mid-way. (A comparison with the column itself takes its
-- collation already.) Locks nothing.
BEGIN
    RETURN coalesce((SELECT format(' COLLATE %I.%I', n.nspname, co.collname)
                       FROM pg_catalog.pg_attribute a
                       JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
                       JOIN pg_catalog.pg_namespace n ON n.oid = co.collnamespace
                      WHERE a.attrelid = p_target AND a.attname = p_column
                        AND a.attnum > 0 AND NOT a.attisdropped), '');
END
$$;
