CREATE OR REPLACE FUNCTION pgjobs._import_json_check(
    p_value jsonb,
    p_shape jsonb,
    p_column text,
    p_path text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Checks the JSON value p_value a JSONL record gives column p_column
-- against p_shape (pgjobs._import_json_shape of the column's type) before
-- json(b)_to_record reads it, so that a record it cannot read faithfully
-- is rejected naming the column and the place (p_path: where p_value sits,
-- the column's name at the top; [i] an array's element from 1, .f a
-- field), never read as another value:
--  - an array whose first element is an array must be rectangular (every
--    sub-array of a level as long as the first; all elements of a level
--    arrays, or none): a multi-dimensional PostgreSQL array has no ragged
--    form (one whose first element is no array is one dimension, a later
--    array an element, as json(b)_to_record and imports before read it);
--  - an object for a composite names only the type's fields (a field
--    missing is NULL; one the type lacks would be dropped without a word);
--  - an object is no array, an array no composite, a number or boolean
--    neither (a string is the type's PostgreSQL text, as a JSONL export
--    writes an array whose lower bounds are not 1, and is read by it).
-- Returns true or raises 22P02 (the INSERT calling it rejects the record
-- with that reason). JSON null is NULL at any level. Locks nothing.
DECLARE
    v_path text := coalesce(p_path, p_column);
    v_kind text := jsonb_typeof(p_value);
    v_dims integer[] := '{}'::integer[];
    v_cur jsonb;
    v_bad record;
    v_key text;
    v_leaf record;
BEGIN
    IF NOT coalesce(p_shape ?| ARRAY['array', 'fields'], false) OR p_value IS NULL
       OR v_kind IN ('null', 'string') THEN
        RETURN true;
    END IF;
    IF p_shape ? 'array' THEN
        IF v_kind <> 'array' THEN
            RAISE EXCEPTION 'column "%": % is a JSON %, where an array of % is expected',
                            p_column, v_path, v_kind, p_shape ->> 'type'
                USING ERRCODE = '22P02',
                HINT = 'Give the array as a JSON array (nested for more dimensions) or as its '
                       'PostgreSQL text in a string (''{1,2}'', ''[0:1]={1,2}'').';
        END IF;
        -- The dimensions, read along the first elements; then every
        -- element of every level checked against them.
        v_cur := p_value;
        LOOP
            v_dims := v_dims || jsonb_array_length(v_cur);
            EXIT WHEN jsonb_array_length(v_cur) = 0 OR jsonb_typeof(v_cur -> 0) <> 'array';
            v_cur := v_cur -> 0;
        END LOOP;
        IF cardinality(v_dims) > 1 THEN
            WITH RECURSIVE w (v, lvl, path, ord) AS (
                SELECT p_value, 1, v_path, '{}'::integer[]
                UNION ALL
                SELECT e.v, w.lvl + 1, w.path || '[' || e.i || ']', w.ord || e.i::integer
                  FROM w CROSS JOIN LATERAL jsonb_array_elements(w.v) WITH ORDINALITY e (v, i)
                 WHERE w.lvl <= cardinality(v_dims) AND jsonb_typeof(w.v) = 'array'
            )
            SELECT w.path, w.lvl, jsonb_typeof(w.v) AS kind,
                   CASE WHEN jsonb_typeof(w.v) = 'array' THEN jsonb_array_length(w.v) END AS len
              INTO v_bad
              FROM w
             WHERE (w.lvl <= cardinality(v_dims)
                    AND (jsonb_typeof(w.v) <> 'array' OR jsonb_array_length(w.v) <> v_dims[w.lvl]))
                OR (w.lvl = cardinality(v_dims) + 1 AND jsonb_typeof(w.v) = 'array')
             ORDER BY w.ord
             LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'column "%": the array is not rectangular: % %, where % %',
                                p_column, v_bad.path,
                                CASE WHEN v_bad.lvl > cardinality(v_dims) THEN 'is an array'
                                     WHEN v_bad.kind <> 'array' THEN 'is a JSON ' || v_bad.kind
                                     ELSE format('has %s elements', v_bad.len) END,
                                v_path || repeat('[1]', v_bad.lvl - 1),
                                CASE WHEN v_bad.lvl > cardinality(v_dims) THEN 'is not'
                                     ELSE format('has %s elements', v_dims[v_bad.lvl]) END
                    USING ERRCODE = '22P02',
                    HINT = 'A multi-dimensional array has sub-arrays of one length at each '
                           'level: pad the short ones with null.';
            END IF;
        END IF;
        IF (p_shape -> 'array') ?| ARRAY['array', 'fields'] THEN
            FOR v_leaf IN
                WITH RECURSIVE w (v, lvl, path, ord) AS (
                    SELECT p_value, 1, v_path, '{}'::integer[]
                    UNION ALL
                    SELECT e.v, w.lvl + 1, w.path || '[' || e.i || ']', w.ord || e.i::integer
                      FROM w CROSS JOIN LATERAL jsonb_array_elements(w.v) WITH ORDINALITY e (v, i)
                     WHERE w.lvl <= cardinality(v_dims) AND jsonb_typeof(w.v) = 'array'
                )
                SELECT w.v, w.path FROM w
                 WHERE w.lvl = cardinality(v_dims) + 1
                   AND jsonb_typeof(w.v) NOT IN ('null', 'string')
                 ORDER BY w.ord
            LOOP
                PERFORM pgjobs._import_json_check(v_leaf.v, p_shape -> 'array', p_column,
                                                  v_leaf.path);
            END LOOP;
        END IF;
        RETURN true;
    END IF;
    IF p_shape ? 'fields' THEN
        IF v_kind <> 'object' THEN
            RAISE EXCEPTION 'column "%": % is a JSON %, where an object of type % is expected',
                            p_column, v_path, v_kind, p_shape ->> 'type'
                USING ERRCODE = '22P02',
                HINT = format('Give the value as a JSON object of its fields (%s), or as its '
                              'PostgreSQL text in a string (''(1,a)'').',
                              (SELECT string_agg(n, ', ')
                                 FROM jsonb_array_elements_text(p_shape -> 'names') n));
        END IF;
        SELECT k INTO v_key FROM jsonb_object_keys(p_value) k
         WHERE NOT (p_shape -> 'fields') ? k ORDER BY k LIMIT 1;
        IF v_key IS NOT NULL THEN
            RAISE EXCEPTION 'column "%": field "%" (at %.%) is not a field of type % (its fields: %)',
                            p_column, v_key, v_path, v_key, p_shape ->> 'type',
                            (SELECT string_agg(n, ', ')
                               FROM jsonb_array_elements_text(p_shape -> 'names') n)
                USING ERRCODE = '22P02',
                HINT = 'Name only the type''s fields (names are compared exactly); a field '
                       'left out is NULL.';
        END IF;
        FOR v_key IN
            SELECT f.key FROM jsonb_each(p_shape -> 'fields') f
             WHERE f.value ?| ARRAY['array', 'fields'] AND p_value ? f.key
             ORDER BY f.key
        LOOP
            PERFORM pgjobs._import_json_check(p_value -> v_key, p_shape -> 'fields' -> v_key,
                                              p_column, v_path || '.' || v_key);
        END LOOP;
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION pgjobs._import_json_check(jsonb, jsonb, text, text) IS
'Checks a JSONL value for an array or composite column against pgjobs._import_json_shape: '
'rectangular arrays, only the type''s fields; true, or 22P02 naming the column and the place.';
