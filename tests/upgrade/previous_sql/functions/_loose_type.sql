CREATE OR REPLACE FUNCTION pgjobs._loose_type(p_type regtype)
RETURNS regtype
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The type a value of a column of type p_type is cast to when the cast must
-- not change it: a domain (over a domain ...) is followed to its base type
-- (pgjobs._base_type), and an array of a domain becomes the array of that
-- base type; any other type is itself. Printed with format_type(.., -1) it
-- has no modifiers. A domain carries its base type's modifiers (CREATE
-- DOMAIN code AS varchar(8): a cast to code truncates 'acme0001x' to
-- 'acme0001'; a domain over numeric(6,2) rounds 1.005 to 1.01) and its
-- CHECKs, so a filter value cast to the domain compares another value than
-- the client wrote: {"code": "acme0001x"} matched the row 'acme0001'.
-- pgjobs._compile_filter casts filter values to this type, and
-- pgjobs._column_type(.., false) prints it. NULL for NULL. Locks nothing.
DECLARE
    v_base regtype := pgjobs._base_type(p_type);
    v_elem regtype;
    v_loose regtype;
BEGIN
    SELECT t.typelem INTO v_elem
      FROM pg_catalog.pg_type t
     WHERE t.oid = v_base AND t.typcategory = 'A' AND t.typelem <> 0 AND t.typlen = -1;
    IF v_elem IS NULL THEN
        RETURN v_base;
    END IF;
    v_loose := pgjobs._loose_type(v_elem);
    IF v_loose = v_elem THEN
        RETURN v_base;
    END IF;
    -- The array type of the element's base type (every base type has one).
    RETURN coalesce((SELECT t.typarray FROM pg_catalog.pg_type t
                      WHERE t.oid = v_loose AND t.typarray <> 0)::regtype, v_base);
END
$$;
