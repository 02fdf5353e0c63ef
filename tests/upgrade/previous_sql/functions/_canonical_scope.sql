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
-- '1.005' rounded, a name cut to 63 bytes) is not a value of the column
-- and is refused, as is one a domain's CHECK refuses, and NULL: 22023 with
-- a hint. Locks nothing.
DECLARE
    v_full text;
    v_loose text;
    v_canonical text;
    v_exact boolean;
    v_type oid;
    v_typmod integer;
BEGIN
    -- The common scope types (no modifiers, no domain and so no domain
    -- checks) are cast by static expressions, whose plans are cached: the
    -- read path canonicalises on every call. Their text form is what the
    -- general path below prints (pgjobs._canonical_text: to_jsonb of an
    -- integer, a uuid or a text is its text); a value that does not cast
    -- goes on to the general path, which raises.
    SELECT a.atttypid, a.atttypmod INTO v_type, v_typmod
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_reg.target AND a.attname = p_reg.scope_column AND a.attnum > 0
       AND NOT a.attisdropped;
    IF p_scope IS NOT NULL AND v_typmod = -1
       AND v_type IN ('integer'::regtype::oid, 'bigint'::regtype::oid,
                      'smallint'::regtype::oid, 'uuid'::regtype::oid, 'text'::regtype::oid) THEN
        BEGIN
            RETURN CASE v_type
                   WHEN 'integer'::regtype::oid THEN p_scope::integer::text
                   WHEN 'bigint'::regtype::oid THEN p_scope::bigint::text
                   WHEN 'smallint'::regtype::oid THEN p_scope::smallint::text
                   WHEN 'uuid'::regtype::oid THEN p_scope::uuid::text
                   ELSE p_scope END;
        EXCEPTION WHEN data_exception THEN
            NULL;  -- the general path raises the error with its hint
        END;
    END IF;
    v_full := pgjobs._column_type(p_reg.target, p_reg.scope_column);
    IF p_scope IS NULL THEN
        RAISE EXCEPTION 'scope must not be null' USING ERRCODE = '22023',
            HINT = format('Pass a value of %s.%I (%s) as text.', p_reg.target,
                          p_reg.scope_column, v_full);
    END IF;
    -- A scope type whose input is no exact read of a value (a reg* name,
    -- xid8, "char": pgjobs._scope_type_inexact), on a target registered
    -- before register_target refused it: no text of it names a tenant, and
    -- its input's own errors (42P01, ...) never reach the caller.
    IF pgjobs._scope_type_inexact(v_type) IS NOT NULL THEN
        RAISE EXCEPTION 'column %.% of type % cannot be a scope: %', p_reg.target,
            p_reg.scope_column, v_full, pgjobs._scope_type_inexact(v_type)
            USING ERRCODE = '22023',
            HINT = format('Register %s again with a scope column of a plain type (bigint, '
                          'integer, text, uuid or oid).', p_reg.target);
    END IF;
    -- The type without its modifiers ('bpchar', '"bit"', 'numeric').
    v_loose := pgjobs._column_type(p_reg.target, p_reg.scope_column, false);
    BEGIN
        EXECUTE format('SELECT pgjobs._canonical_text(v), v = %L::%s FROM (SELECT %L::%s AS v) s',
                       p_scope, v_loose, p_scope, v_full)
           INTO v_canonical, v_exact;
    EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
        -- A value a domain's CHECK (or NOT NULL) refuses (23514, 23502) is
        -- no more a value of the column than one the type cannot parse:
        -- 22023 below, and NULL for pgjobs._scope_entry, whose callers
        -- (the policy on pgjobs.jobs among them) read every entry of
        -- pgjobs.allowed_scopes for every target.
        v_canonical := NULL;
    END;
    -- A name keeps at most 63 bytes and its input cuts a longer text
    -- without a word: that text is no value of the column either (as a
    -- char(8) scope 'acme0001x' is not), never the tenant it would cut to.
    -- Its canonical text is the input itself otherwise.
    IF v_canonical IS DISTINCT FROM p_scope AND pgjobs._base_type(v_type) = 'name'::regtype THEN
        v_canonical := NULL;
    END IF;
    IF v_canonical IS NULL OR NOT coalesce(v_exact, false) THEN
        RAISE EXCEPTION 'scope % is not a valid % (column %.%)', quote_literal(left(p_scope, 200)),
            v_full, p_reg.target, p_reg.scope_column
            USING ERRCODE = '22023',
            HINT = format('Pass a value of %s as text, exactly as the column can store it '
                          '(no digits or characters its modifiers or its type would drop, such as '
                          'a name''s bytes past 63, nothing a CHECK of its domain refuses).', v_full);
    END IF;
    RETURN v_canonical;
END
$$;
