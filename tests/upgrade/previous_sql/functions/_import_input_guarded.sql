CREATE OR REPLACE FUNCTION pgjobs._import_input_guarded(p_type regtype, p_depth integer DEFAULT 1)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether an import reads a value of type p_type through
-- pgjobs._import_input (or pgjobs._import_json_input): true when the type,
-- or a type inside it (through domains, array elements, a composite's
-- fields, a range's subtype), may refuse a bad value with an error outside
-- class 22 (data exception), which pgjobs.import_batch takes for a failure
-- of the whole job, not for one bad record. Those are every type of an
-- extension (hstore raises XX000, ltree, seg and query_int 42601; none is
-- known to keep to class 22) and the built-in types measured to leave it:
-- tsvector, tsquery and jsonpath (42601), aclitem and the reg* types
-- (42704, 42P01, 42883, 42602, 3F000), and the types that accept no value
-- at all (0A000: pg_node_tree, gtsvector, ...). Every other built-in type
-- and every enum refuse a bad value with 22xxx, and a string type (citext
-- too) takes any text: they are read by a plain cast, at no cost
-- (tests/test_import_bad_inputs.py tries bad values for every type of
-- every extension installable here). Computed once per
-- statement (pgjobs._import_insert_sql), never per record. Locks nothing.
DECLARE
    v_type regtype := pgjobs._base_type(p_type);
    v_t record;
BEGIN
    IF p_depth > 32 THEN
        RETURN true;  -- (PostgreSQL forbids a type that holds itself)
    END IF;
    SELECT t.typtype, t.typname, t.typcategory, nullif(t.typelem, 0)::regtype AS elem,
           nullif(t.typrelid, 0) AS rel,
           t.typsubscript = 'array_subscript_handler'::regproc AS is_array
      INTO v_t
      FROM pg_catalog.pg_type t WHERE t.oid = v_type;
    IF NOT FOUND THEN
        RETURN true;
    END IF;
    IF v_t.is_array AND v_t.elem IS NOT NULL THEN
        RETURN pgjobs._import_input_guarded(v_t.elem, p_depth + 1);
    END IF;
    IF v_t.typtype = 'c' THEN
        RETURN EXISTS (
            SELECT FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = v_t.rel AND a.attnum > 0 AND NOT a.attisdropped
               AND pgjobs._import_input_guarded(a.atttypid::regtype, p_depth + 1));
    END IF;
    IF v_t.typtype = 'r' THEN
        RETURN pgjobs._import_input_guarded(
            (SELECT r.rngsubtype::regtype FROM pg_catalog.pg_range r WHERE r.rngtypid = v_type),
            p_depth + 1);
    END IF;
    IF v_t.typtype = 'm' THEN
        RETURN pgjobs._import_input_guarded(
            (SELECT r.rngsubtype::regtype FROM pg_catalog.pg_range r
              WHERE r.rngmultitypid = v_type), p_depth + 1);
    END IF;
    IF v_t.typtype = 'e' THEN
        RETURN false;  -- (enum_in: 22P02)
    END IF;
    -- A string type takes any text (citext, an extension's, is one): a
    -- column of it keeps its plain cast, at no cost.
    IF v_t.typcategory = 'S' THEN
        RETURN false;
    END IF;
    RETURN v_type::oid >= 16384  -- FirstNormalObjectId: not built in
           OR v_t.typname IN ('tsvector', 'tsquery', 'jsonpath', 'aclitem', 'gtsvector')
           OR v_t.typname ~ '^(reg|pg_)';
END
$$;

COMMENT ON FUNCTION pgjobs._import_input_guarded(regtype, integer) IS
'Whether an import reads values of the type through pgjobs._import_input: a type (or one inside '
'it) whose input may refuse a bad value with an error outside class 22.';
