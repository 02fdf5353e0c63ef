CREATE OR REPLACE FUNCTION pgjobs._type_sql(p_type text)
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- A type as format_type() spells it (under pgjobs' pinned path), written so
-- that it names the same type on any search_path: the text pgjobs generates
-- (a job's predicate, pgjobs.mask) is also read on clients' paths, where
-- 'x'::text would take a type or domain named text in a schema searched
-- before pg_catalog (and run its CHECK). A bare name of a pg_catalog type
-- (text, uuid, date, timestamptz, "char", with [] for arrays) gets
-- 'pg_catalog.'; keyword spellings (integer, character varying(10),
-- timestamp with time zone) always mean pg_catalog's and other schemas'
-- types are printed qualified already: both are returned as they are.
-- Locks nothing.
DECLARE
    v_name text := substring(p_type FROM '^([a-z_][a-z0-9_]*|"char")(?:\[\])*$');
BEGIN
    IF v_name IS NOT NULL
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                    WHERE t.typnamespace = 'pg_catalog'::regnamespace
                      AND t.typname = CASE WHEN v_name = '"char"' THEN 'char' ELSE v_name END) THEN
        RETURN 'pg_catalog.' || p_type;
    END IF;
    RETURN p_type;
END
$$;
