CREATE OR REPLACE FUNCTION pgjobs._column_type(p_target regclass, p_column name,
                                               p_modifiers boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The full SQL type of a column, modifiers included, as format_type() spells
-- it: 'character(8)', 'numeric(10,2)', 'bit(4)', 'public.tenant_id'. Every
-- literal pgjobs builds for a target's column is cast to this, never to the
-- bare type name ('character' is char(1), 'bit' is bit(1)). With
-- p_modifiers false: the type without modifiers, domains resolved to their
-- base type ('bpchar', '"bit"', 'numeric'; an array of a domain to the
-- array of its base type: pgjobs._loose_type), whose cast changes no value:
-- comparing a value cast both ways tells whether the column's modifiers
-- would change it (truncate, pad, round). Read from pg_attribute at each
-- use, so an ALTER COLUMN ... TYPE after registration is followed. Raises
-- 42703 when the column is gone. Locks nothing.
DECLARE
    v_type oid;
    v_typmod integer;
BEGIN
    SELECT a.atttypid, a.atttypmod INTO v_type, v_typmod
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_target AND a.attname = p_column AND a.attnum > 0
       AND NOT a.attisdropped;
    IF v_type IS NULL THEN
        RAISE EXCEPTION 'column "%" of % does not exist', p_column, p_target
            USING ERRCODE = '42703',
            HINT = 'The table changed after registration: register it again with '
                   'pgjobs.register_target.';
    END IF;
    IF p_modifiers THEN
        RETURN format_type(v_type, v_typmod);
    END IF;
    RETURN format_type(pgjobs._loose_type(v_type), -1);
END
$$;
