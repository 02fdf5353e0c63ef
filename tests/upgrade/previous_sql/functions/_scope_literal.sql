CREATE OR REPLACE FUNCTION pgjobs._scope_literal(p_reg pgjobs.target_registry, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The scope as a typed SQL literal ('42'::integer), or 22023 when p_scope
-- is not a value of the scope column's type. Locks nothing.
DECLARE
    v_literal text := format('%L::%s', p_scope, p_reg.scope_type::text);
BEGIN
    IF p_scope IS NULL THEN
        RAISE EXCEPTION 'scope must not be null' USING ERRCODE = '22023',
            HINT = format('Pass a value of %s.%I (%s) as text.', p_reg.target,
                          p_reg.scope_column, p_reg.scope_type);
    END IF;
    BEGIN
        EXECUTE 'SELECT ' || v_literal;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'scope % is not a valid % (column %.%)', quote_literal(p_scope),
            p_reg.scope_type, p_reg.target, p_reg.scope_column
            USING ERRCODE = '22023',
            HINT = format('Pass a value of %s as text, e.g. %L.', p_reg.scope_type,
                          CASE WHEN p_reg.scope_type::text IN ('integer', 'bigint', 'smallint')
                               THEN '42' ELSE 'tenant-1' END);
    END;
    RETURN v_literal;
END
$$;
