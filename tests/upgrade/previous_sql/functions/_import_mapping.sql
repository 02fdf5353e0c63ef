CREATE OR REPLACE FUNCTION pgjobs._import_mapping(p_reg pgjobs.target_registry, p_fields text[])
RETURNS jsonb
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Where each field an import's source names goes, as decided against the
-- target now: {"field": "column <name> <full type>"} for a column of the
-- target, {"field": "document <document column>"} for a document field.
-- The first batch stores it in the job's checkpoint ("mapping"), and every
-- later batch and every resume must find the same (pgjobs._import_insert_sql
-- refuses a change with 55000): a column added, dropped, renamed or retyped
-- in the middle of an import would otherwise send the same source field to
-- a different place from one batch to the next. Locks nothing.
SELECT coalesce(jsonb_object_agg(f.name, CASE
           WHEN a.attname IS NOT NULL THEN
               format('column %I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod))
           ELSE format('document %I', p_reg.document_column) END), '{}'::jsonb)
  FROM unnest(p_fields) f(name)
  LEFT JOIN pg_catalog.pg_attribute a
    ON a.attrelid = p_reg.target AND a.attname = f.name AND a.attnum > 0 AND NOT a.attisdropped
 WHERE f.name IS NOT NULL AND f.name <> '';
$$;
