CREATE OR REPLACE FUNCTION pgjobs._import_json_dupes(
    p_value json,
    p_shape jsonb,
    p_column text)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- True when no JSON object that a JSONL import reads as a composite value
-- (p_value, as the line spells it: json keeps a key named twice, jsonb
-- only the last; p_shape, pgjobs._import_json_shape of column p_column's
-- type) names a field twice; else raises 22030 naming the column and the
-- field: one rejected record. Which of the two values is meant is not
-- clear (json(b)_to_record took the last without a word), as a record
-- naming a column twice is refused by the worker (a JSON Lines record
-- names each column or document field once). Walks the composites and
-- arrays the shape names, not a json or jsonb field's own value, whose
-- keys are its own to keep. Called by pgjobs._import_insert_sql's
-- statement only for a column whose type holds a composite and a value
-- that is a JSON object or array. Locks nothing.
DECLARE
    v_key text;
    v_item record;
BEGIN
    IF p_value IS NULL OR p_shape IS NULL THEN
        RETURN true;
    END IF;
    IF p_shape ? 'fields' AND json_typeof(p_value) = 'object' THEN
        SELECT k INTO v_key
          FROM json_object_keys(p_value) k GROUP BY k HAVING count(*) > 1
         ORDER BY min(k) LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'column "%": the JSON object names field "%" twice', p_column,
                            left(v_key, 200)
                USING ERRCODE = '22030',  -- duplicate_json_object_key_value
                HINT = format('A JSON object read as type %s names each field once: which of '
                              'the values is meant is not clear.', p_shape ->> 'type');
        END IF;
        FOR v_item IN SELECT e.key, e.value FROM json_each(p_value) e LOOP
            IF coalesce(p_shape -> 'fields' -> v_item.key, 'null') @? '$.** ? (exists (@.fields))' THEN
                PERFORM pgjobs._import_json_dupes(v_item.value, p_shape -> 'fields' -> v_item.key,
                                                  p_column);
            END IF;
        END LOOP;
    ELSIF p_shape ? 'array' AND json_typeof(p_value) = 'array'
          AND coalesce(p_shape -> 'array', 'null') @? '$.** ? (exists (@.fields))' THEN
        FOR v_item IN SELECT e.value FROM json_array_elements(p_value) e LOOP
            PERFORM pgjobs._import_json_dupes(v_item.value, p_shape -> 'array', p_column);
        END LOOP;
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs._import_json_dupes(json, jsonb, text) IS
'True unless a JSON object a JSONL import reads as a composite names a field twice: then 22030 '
'naming the column and the field (one rejected record).';

CREATE OR REPLACE FUNCTION pgjobs._import_json_dupes_sql(
    p_value text,
    p_shape jsonb,
    p_depth integer DEFAULT 1)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- An SQL expression, true when the json value p_value (an expression)
-- holds an object read as a composite of shape p_shape that names a field
-- twice, unrolled from the shape once per statement: a record without one
-- costs a look at each such object's keys, no function call (the call of
-- pgjobs._import_json_dupes per record took a nested JSONL import 1.7x as
-- long), and only a record with one calls it for the message. NULL when
-- the shape holds no composite. Locks nothing.
DECLARE
    v_parts text[] := '{}'::text[];
    v_field record;
    v_inner text;
    v_elem text := 'pgjobs_d' || p_depth;
BEGIN
    IF p_depth > 32 OR p_shape IS NULL
       OR NOT p_shape @? '$.** ? (exists (@.fields))' THEN
        RETURN NULL;
    END IF;
    IF p_shape ? 'fields' THEN
        v_parts := v_parts || format(
            'EXISTS (SELECT FROM pg_catalog.json_object_keys(%s) %I (k) GROUP BY %I.k '
            'HAVING count(*) > 1)', p_value, v_elem, v_elem);
        FOR v_field IN SELECT f.key, f.value FROM jsonb_each(p_shape -> 'fields') f LOOP
            v_inner := pgjobs._import_json_dupes_sql(
                format('(%s -> %L)', p_value, v_field.key), v_field.value, p_depth + 1);
            IF v_inner IS NOT NULL THEN
                v_parts := v_parts || v_inner;
            END IF;
        END LOOP;
        RETURN format('(CASE WHEN pg_catalog.json_typeof(%s) = ''object'' THEN %s ELSE false END)',
                      p_value, array_to_string(v_parts, ' OR '));
    END IF;
    v_inner := pgjobs._import_json_dupes_sql(format('%I.v', v_elem), p_shape -> 'array',
                                             p_depth + 1);
    RETURN format('(CASE WHEN pg_catalog.json_typeof(%s) = ''array'' THEN EXISTS (SELECT FROM '
                  'pg_catalog.json_array_elements(%s) %I (v) WHERE %s) ELSE false END)',
                  p_value, p_value, v_elem, v_inner);
END
$$;

COMMENT ON FUNCTION pgjobs._import_json_dupes_sql(text, jsonb, integer) IS
'An SQL expression: whether a JSONL value holds an object read as a composite that names a '
'field twice (inline, from the shape); NULL when the shape holds no composite.';
