CREATE OR REPLACE FUNCTION pgjobs._base_type(p_type regtype)
RETURNS regtype
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The type whose values p_type holds: a domain (over a domain ...)
-- followed down to its base type, any other type itself, NULL for NULL.
-- The one such walk: every place that judges a value by its base type
-- (pgjobs._canonical_text, pgjobs._column_type, pgjobs._row_selection,
-- pgjobs._scope_entry_fixed) calls it. STABLE, not IMMUTABLE: it reads
-- pg_type. Locks nothing.
DECLARE
    v_type regtype := p_type;
    v_base regtype;
BEGIN
    LOOP
        SELECT t.typbasetype INTO v_base
          FROM pg_catalog.pg_type t WHERE t.oid = v_type AND t.typtype = 'd';
        EXIT WHEN NOT FOUND;
        v_type := v_base;
    END LOOP;
    RETURN v_type;
END
$$;
