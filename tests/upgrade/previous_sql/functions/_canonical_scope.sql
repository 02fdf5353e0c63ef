CREATE OR REPLACE FUNCTION pgjobs._canonical_scope(p_reg pgjobs.target_registry, p_scope text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The canonical text of a scope of a registered target: p_scope cast to the
-- scope column's full type (pgjobs._column_type) and printed back by
-- pgjobs._canonical_text. Every entry point (submits, mask, visible,
-- visible_count, the allowed_scopes checks) passes scopes through here,
-- and pgjobs.jobs.scope stores the result, so '1', '01', ' 1' and '+1' of
-- an integer scope are one tenant for the mask, the gate, on_conflict and
-- tenancy alike. The value is parsed in the caller's session (DateStyle,
-- TimeZone: deliberately not pinned here), as a comparison in the caller's
-- own SQL would parse it. A value the column's type modifiers would change
-- (a char(8) scope 'acme0001x' cast to 'acme0001', a numeric(5,2) scope
-- '1.005' rounded) is not a value of the column and is refused, as is
-- NULL: 22023 with a hint. Locks nothing.
DECLARE
    v_full text := pgjobs._column_type(p_reg.target, p_reg.scope_column);
    v_loose text;
    v_canonical text;
    v_exact boolean;
BEGIN
    IF p_scope IS NULL THEN
        RAISE EXCEPTION 'scope must not be null' USING ERRCODE = '22023',
            HINT = format('Pass a value of %s.%I (%s) as text.', p_reg.target,
                          p_reg.scope_column, v_full);
    END IF;
    -- The type without its modifiers ('bpchar', '"bit"', 'numeric').
    v_loose := pgjobs._column_type(p_reg.target, p_reg.scope_column, false);
    BEGIN
        EXECUTE format('SELECT pgjobs._canonical_text(v), v = %L::%s FROM (SELECT %L::%s AS v) s',
                       p_scope, v_loose, p_scope, v_full)
           INTO v_canonical, v_exact;
    EXCEPTION WHEN data_exception THEN
        v_canonical := NULL;
    END;
    IF v_canonical IS NULL OR NOT coalesce(v_exact, false) THEN
        RAISE EXCEPTION 'scope % is not a valid % (column %.%)', quote_literal(left(p_scope, 200)),
            v_full, p_reg.target, p_reg.scope_column
            USING ERRCODE = '22023',
            HINT = format('Pass a value of %s as text, exactly as the column can store it '
                          '(no digits or characters its modifiers would drop).', v_full);
    END IF;
    RETURN v_canonical;
END
$$;
