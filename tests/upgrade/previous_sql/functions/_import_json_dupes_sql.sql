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
    -- An element that is itself a JSON array (the array's next dimension,
    -- [[{..}]]) is not unrolled here, where the depth of the value is not
    -- known: such a value counts as one that may name a field twice, for
    -- pgjobs._import_json_dupes (which walks every dimension) to judge.
    RETURN format('(CASE WHEN pg_catalog.json_typeof(%s) = ''array'' THEN EXISTS (SELECT FROM '
                  'pg_catalog.json_array_elements(%s) %I (v) WHERE '
                  'pg_catalog.json_typeof(%I.v) = ''array'' OR %s) ELSE false END)',
                  p_value, p_value, v_elem, v_elem, v_inner);
END
$$;

COMMENT ON FUNCTION pgjobs._import_json_dupes_sql(text, jsonb, integer) IS
'An SQL expression: whether a JSONL value holds an object read as a composite that names a '
'field twice (inline, from the shape); NULL when the shape holds no composite.';
