CREATE OR REPLACE FUNCTION pgjobs._scope_literal(p_reg pgjobs.target_registry, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The scope as a typed SQL literal of the scope column's full type
-- ('42'::integer, 'acme0001'::character(8)), from its canonical text
-- (pgjobs._canonical_scope), or 22023 when p_scope is not a value of the
-- column. Locks nothing.
BEGIN
    RETURN format('%L::%s', pgjobs._canonical_scope(p_reg, p_scope),
                  pgjobs._type_sql(pgjobs._column_type(p_reg.target, p_reg.scope_column)));
END
$$;
