CREATE OR REPLACE FUNCTION pgjobs._handler(p_name jsonb)
RETURNS regprocedure
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Resolves a backfill handler: the schema-qualified name of a function
-- (regclass, text[]) RETURNS bigint. Only superusers and members of
-- pgjobs_admin may name one, since it runs with the engine's rights; the
-- caller is pgjobs._caller() (the role the submit acts for), not current_user.
-- Raises 42501 or 22023.
DECLARE
    v_proc regprocedure;
    v_caller name := pgjobs._caller();
BEGIN
    IF NOT (pg_has_role(v_caller, 'pgjobs_admin', 'MEMBER')
            OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = v_caller)) THEN
        RAISE EXCEPTION 'only pgjobs_admin may set a backfill handler' USING ERRCODE = '42501',
            HINT = 'Ask an administrator, or use set instead.';
    END IF;
    IF jsonb_typeof(p_name) IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'option "handler" must be a function name' USING ERRCODE = '22023',
            HINT = 'For example "public.fill_totals", a function (regclass, text[]) RETURNS bigint.';
    END IF;
    BEGIN
        v_proc := to_regprocedure((p_name #>> '{}') || '(regclass, text[])');
    EXCEPTION WHEN OTHERS THEN
        v_proc := NULL;  -- the text does not even parse as a function name
    END;
    IF v_proc IS NULL OR (SELECT p.prorettype FROM pg_proc p WHERE p.oid = v_proc)
                         <> 'bigint'::regtype THEN
        RAISE EXCEPTION 'handler % is not a function (regclass, text[]) RETURNS bigint', p_name
            USING ERRCODE = '22023',
            HINT = 'Name it with its schema, e.g. "public.fill_totals", a function '
                   '(p_target regclass, p_keys text[]) RETURNS bigint.';
    END IF;
    -- It runs with the engine's rights: its owner must hold them already.
    PERFORM pgjobs._require_handler_trusted(v_proc);  -- 42501
    RETURN v_proc;
END
$$;
