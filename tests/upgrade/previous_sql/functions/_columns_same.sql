CREATE OR REPLACE FUNCTION pgjobs._columns_same(p_target regclass, p_recorded jsonb)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether every column of p_recorded (pgjobs._target_columns at a job's
-- submit; NULL: a job submitted before migration 0036, true) is still
-- p_target's column of that number, name, type, type modifier and
-- collation, and every enum label it recorded still that value's. The one
-- test of a job's columns: pgjobs._columns_changed (which then says what
-- changed), the read mask (pgjobs._mask, pgjobs._mask_candidates). One
-- index probe of pg_attribute per column (and of pg_enum per label), in a
-- plan PL/pgSQL keeps for the session: a read pays a few microseconds per
-- pending delete. Locks nothing.
BEGIN
    RETURN p_recorded IS NULL OR NOT EXISTS (
        SELECT FROM jsonb_to_recordset(p_recorded)
                    AS c(n smallint, name name, type oid, typmod integer, "collation" oid,
                         labels jsonb)
         WHERE NOT EXISTS (
               SELECT FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = p_target AND a.attnum = c.n
                  AND a.attname = c.name AND a.atttypid = c.type
                  AND a.atttypmod = c.typmod AND a.attcollation = c."collation"
                  AND NOT a.attisdropped)
            OR (c.labels IS NOT NULL
                AND EXISTS (SELECT FROM jsonb_each_text(c.labels) l
                             WHERE NOT EXISTS (
                                   SELECT FROM pg_catalog.pg_enum e
                                    WHERE e.oid = l.key::oid
                                      AND e.enumlabel = l.value::name))));
END
$$;
