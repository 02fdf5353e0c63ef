CREATE OR REPLACE FUNCTION pgjobs._value_type(p_target regclass, p_column name)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The type a value the client wrote for column p_column of p_target is cast
-- to before the INSERT assigns it to the column (an import's records): the
-- value must come out as COPY or an INSERT of it would store it, or be
-- refused as they refuse it. An explicit cast to a string or bit string
-- type with a length (varchar(n), char(n), bit(n), varbit(n); a domain
-- over one; an array of them) cuts or pads silently, where the
-- assignment refuses the value (22001 "value too long for type character
-- varying(5)", 22026 "bit string length 3 does not match type bit(5)"):
-- an import of 'abcdefgh' into a varchar(5) stored 'abcde' and reported no
-- reject. For such a column: the type without modifiers
-- (pgjobs._column_type(.., false), a domain resolved to its base type),
-- and the column's assignment applies the length and the domain's checks.
-- Any other type: the column's full type (pgjobs._column_type), whose
-- explicit cast does what the assignment does (a numeric(p,s), a
-- timestamp(p) rounds either way) and checks a domain while the values
-- are read (pgjobs._import_suspects). Raises 42703 when the column is
-- gone. Locks nothing.
DECLARE
    v_type text := pgjobs._column_type(p_target, p_column);
    v_loose text := pgjobs._column_type(p_target, p_column, false);
BEGIN
    IF v_type <> v_loose AND EXISTS (
           SELECT FROM pg_catalog.pg_attribute a
             JOIN pg_catalog.pg_type bt ON bt.oid = pgjobs._base_type(a.atttypid)
             JOIN pg_catalog.pg_type et
               ON et.oid = CASE WHEN bt.typcategory = 'A' AND bt.typelem <> 0
                                THEN pgjobs._base_type(bt.typelem) ELSE bt.oid END
            WHERE a.attrelid = p_target AND a.attname = p_column
              AND et.typcategory IN ('S', 'V')) THEN
        RETURN v_loose;
    END IF;
    RETURN v_type;
END
$$;
