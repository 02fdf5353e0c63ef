CREATE OR REPLACE FUNCTION pgjobs._operand_positions(p_operand jsonb)
RETURNS TABLE (steps text, shown text, json_type text)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Every position inside an object or array operand of a filter, with the
-- JSON type of the value there: a field of an object (steps ."key", as a
-- strict SQL/JSON path continues; shown .key) and an element of an array
-- (steps [*], shown []), at any depth, once each (a position and type that
-- recur, in several elements, count once). A value compared for equality
-- equals only one that has these fields and elements of these types, so
-- pgjobs._require_value_types asks that some row holds each: an operand
-- {"a": "1"} on objects whose a holds numbers, or ["1"] on arrays of
-- numbers, or a misspelt {"A": 1}, equals no row, and negated ($ne, $nin,
-- $not) takes them all. JSON null inside counts as a type (a field that is
-- null is no missing field). Empty for a scalar, {} and []. Locks nothing.
WITH RECURSIVE pos (steps, shown, value) AS (
    SELECT ''::text, ''::text, p_operand
    UNION ALL
    SELECT p.steps || e.steps, p.shown || e.shown, e.value
      FROM pos p
     CROSS JOIN LATERAL (
        SELECT '.' || pg_catalog.to_json(o.key)::text AS steps, '.' || o.key AS shown,
               o.value
          FROM pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(p.value)
                                               OPERATOR(pg_catalog.=) 'object'
                                          THEN p.value END) o
        UNION ALL
        SELECT '[*]', '[]', a.value
          FROM pg_catalog.jsonb_array_elements(CASE WHEN pg_catalog.jsonb_typeof(p.value)
                                                         OPERATOR(pg_catalog.=) 'array'
                                                    THEN p.value END) a) e
)
SELECT DISTINCT ON (pos.steps, pg_catalog.jsonb_typeof(pos.value))
       pos.steps, pos.shown, pg_catalog.jsonb_typeof(pos.value)
  FROM pos
 WHERE pos.steps OPERATOR(pg_catalog.<>) ''
 ORDER BY pos.steps, pg_catalog.jsonb_typeof(pos.value)
$$;
