CREATE OR REPLACE FUNCTION pgjobs._column_read_targets_as(p_caller name)
RETURNS regclass[]
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The body of pgjobs._column_read_targets, run as pgjobs' owner for
-- p_caller (its only permitted caller: pgjobs._enter, 42501 otherwise):
-- every relation with a column grant (pg_attribute.attacl set on a live
-- column) that p_caller may SELECT as a whole (pgjobs._reads_every_column:
-- on the table, or on every one of its columns now), registered or not, in
-- oid order. It reads the catalogs only, which every role may read: it
-- tells the caller nothing it could not work out itself, and nothing of
-- pgjobs' registry. Costs one pass over the user tables' rows of
-- pg_attribute (no index on attacl), then the rule once per relation with
-- a column grant. Locks nothing.
BEGIN
    p_caller := pgjobs._enter('_column_read_targets', p_caller) AS sealed_call;  -- 42501 for any other caller (alias: pgjobs._sealed_frame)
    -- A target is a user's table, its oid past the catalogs'
    -- (FirstNormalObjectId, 16384): the scan skips their columns (an index
    -- range, a third of the time in a small database). A built-in relation
    -- is never listed: at worst its table grant alone counts, as before. MATERIALIZED: the
    -- rule once per relation, not pushed down to each granted column's row.
    RETURN pgjobs._leave(ARRAY(
        WITH g AS MATERIALIZED (
            SELECT DISTINCT a.attrelid
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid >= 16384::oid AND a.attnum > 0
               AND a.attacl IS NOT NULL AND NOT a.attisdropped)
        SELECT g.attrelid::regclass
          FROM g
         WHERE coalesce(has_table_privilege(p_caller, g.attrelid, 'SELECT'), false)
               OR pgjobs._reads_every_column(p_caller, g.attrelid::regclass)
         ORDER BY g.attrelid));
END
$$;
