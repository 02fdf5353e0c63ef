CREATE OR REPLACE FUNCTION pgjobs._import_json_shape(p_type regtype, p_depth integer DEFAULT 1)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- What a JSONL import checks of a JSON value given for type p_type before
-- json(b)_to_record reads it (pgjobs._import_json_check): that PostgreSQL
-- function ignores an object's unknown fields (a misspelt field would be
-- NULL with no word) and refuses a ragged array as "malformed JSON array",
-- naming neither the column nor the place. Returns, through domains:
--   {"array": <the element's shape>, "type": ...} for an array type;
--   {"fields": {name: <shape>, ...}, "names": [...], "type": ...} for a
--   composite type;
--   {"exact": true} for real, double precision and json, and an array of
--   json: a value read from the line's json text, not jsonb's (-0, a json
--   value's own spelling), wherever it sits;
--   NULL for any other type (a scalar, jsonb: the type's own input judges
--   the value). An array of json or jsonb is no "array": its JSON array is
--   read as one dimension of JSON values, as before.
-- Computed once per statement (pgjobs._import_insert_sql), never per
-- record: it reads the catalog. Locks nothing.
DECLARE
    v_type regtype := pgjobs._base_type(p_type);
    v_t record;
    v_fields jsonb := '{}'::jsonb;
    v_names jsonb := '[]'::jsonb;
    v_att record;
BEGIN
    IF p_depth > 32 THEN
        RETURN NULL;  -- (PostgreSQL forbids a type that holds itself)
    END IF;
    SELECT t.typtype, nullif(t.typelem, 0)::regtype AS elem, nullif(t.typrelid, 0) AS rel,
           t.typsubscript = 'array_subscript_handler'::regproc AS is_array
      INTO v_t
      FROM pg_catalog.pg_type t WHERE t.oid = v_type;
    IF v_t.is_array AND v_t.elem IS NOT NULL THEN
        IF pgjobs._base_type(v_t.elem) = 'json'::regtype THEN
            RETURN '{"exact": true}'::jsonb;
        ELSIF pgjobs._base_type(v_t.elem) = 'jsonb'::regtype THEN
            RETURN NULL;
        END IF;
        RETURN jsonb_build_object('array', pgjobs._import_json_shape(v_t.elem, p_depth + 1),
                                  'type', format_type(v_type, NULL));
    END IF;
    IF v_t.typtype = 'c' THEN
        FOR v_att IN
            SELECT a.attname, a.atttypid::regtype AS typ
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = v_t.rel AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum
        LOOP
            v_fields := v_fields || jsonb_build_object(
                v_att.attname, pgjobs._import_json_shape(v_att.typ, p_depth + 1));
            v_names := v_names || to_jsonb(v_att.attname::text);
        END LOOP;
        RETURN jsonb_build_object('fields', v_fields, 'names', v_names,
                                  'type', format_type(v_type, NULL));
    END IF;
    IF v_type IN ('real'::regtype, 'double precision'::regtype, 'json'::regtype) THEN
        RETURN '{"exact": true}'::jsonb;
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._import_json_shape(regtype, integer) IS
'What a JSONL import checks of a JSON value for type p_type (arrays: rectangular; composites: '
'known fields), as jsonb for pgjobs._import_json_check; NULL when the type''s input judges it all.';
