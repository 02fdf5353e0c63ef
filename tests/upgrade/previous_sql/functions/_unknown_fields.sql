CREATE OR REPLACE FUNCTION pgjobs._unknown_fields(
    p_reg pgjobs.target_registry,
    p_scope text,
    p_paths text[],
    OUT p_unknown text[],
    OUT p_complete boolean,
    OUT p_rows_read bigint)
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Which of the document paths p_paths (dotted, as a filter or an export's
-- columns write them) no row of scope p_scope (canonical text) of the
-- target has. A row has a path when `doc -> 'a' -> 'b'` is not SQL NULL:
-- a field holding JSON null exists, and a path never indexes into an
-- array, exactly as the filter compiler reads it.
--
-- Cost, bounded: the walk is pgjobs._unknown_fields_from's (the one walk,
-- also resumed page by page by a delete's deferred guard): the scope is
-- read in key order on the (scope, key) index, in chunks of 1,000, 10,000,
-- then 100,000 rows, each chunk one aggregate over the paths still missing;
-- the walk stops as soon as every path has been seen (a field that most
-- rows have costs one chunk of 1,000 rows), at the end of the scope, or
-- after pgjobs.field_check_rows rows (a session setting; default and
-- maximum 1,000,000; minimum 1,000). Past that bound the paths not seen are
-- returned with p_complete = false: the caller refuses them (unknown until
-- proven known). An empty scope has no unknown paths (a job on it changes
-- nothing). p_rows_read: the rows read. Locks nothing.
DECLARE
    v_walk record;
BEGIN
    SELECT * INTO v_walk FROM pgjobs._unknown_fields_from(p_reg, p_scope, p_paths, NULL, 0, NULL);
    p_rows_read := v_walk.p_rows_read;
    p_complete := v_walk.p_state <> 'bound';
    IF p_rows_read = 0 THEN
        p_unknown := '{}';  -- an empty scope
        RETURN;
    END IF;
    -- Each once, in the order the caller listed them.
    SELECT coalesce(array_agg(f.p ORDER BY f.o), '{}') INTO p_unknown
      FROM (SELECT u.p, min(u.o) AS o
              FROM unnest(p_paths) WITH ORDINALITY AS u(p, o)
             WHERE u.p = ANY (v_walk.p_missing) GROUP BY u.p) f;
END
$$;
