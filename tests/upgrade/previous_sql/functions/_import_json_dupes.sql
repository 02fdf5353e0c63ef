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
        -- (A nested JSON array is the array's next dimension, of the same
        -- elements: [[{..}]] is read as a two-dimensional array.)
        FOR v_item IN SELECT e.value FROM json_array_elements(p_value) e LOOP
            PERFORM pgjobs._import_json_dupes(
                v_item.value,
                CASE WHEN json_typeof(v_item.value) = 'array' THEN p_shape
                     ELSE p_shape -> 'array' END,
                p_column);
        END LOOP;
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs._import_json_dupes(json, jsonb, text) IS
'True unless a JSON object a JSONL import reads as a composite names a field twice: then 22030 '
'naming the column and the field (one rejected record).';
