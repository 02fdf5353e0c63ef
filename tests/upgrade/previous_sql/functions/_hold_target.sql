CREATE OR REPLACE FUNCTION pgjobs._hold_target(p_target regclass)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Takes p_target's ACCESS SHARE lock, as any read of it does, to the end of
-- the transaction: a column renamed, dropped or retyped (ALTER TABLE takes
-- ACCESS EXCLUSIVE) cannot commit between this call and the statements
-- after it, so the columns pgjobs._columns_changed compares are the ones
-- those statements resolve. (A read that returns nothing: it runs in STABLE
-- callers and on a standby, where LOCK TABLE is not allowed or not wanted.)
-- Without SELECT on the table the caller learns nothing here: the
-- statements after it raise 42501 with their own hint.
--
-- The lock can come after the caller's snapshot: an export chunk's
-- REPEATABLE READ transaction took it at its first statement, and a STABLE
-- caller (pgjobs._require_same_columns) reads with the snapshot of the
-- statement that called it. Waiting here for an ALTER TABLE, such a caller
-- read the columns as they were before it (pgjobs._columns_changed saw no
-- change) while its statements, planned after the wait, resolved the new
-- ones: a chunk that waited behind a swap of two columns exported the other
-- column's rows. So this raises 40001 when a column row of p_target that
-- the snapshot sees was replaced or deleted by a transaction that has
-- committed (committed after the snapshot, or the snapshot would not see
-- the old row): a transaction begun anew sees the change, and its check
-- fails the job for good. An index probe of the table's pg_attribute rows;
-- the commit status is looked up only for a row with an xmax.
DECLARE
    v_next numeric;
BEGIN
    BEGIN
        EXECUTE format('SELECT FROM %s WHERE false', p_target);
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = p_target AND a.attnum > 0
                      AND a.xmax OPERATOR(pg_catalog.<>) '0'::xid) THEN
        RETURN;
    END IF;
    -- The 32-bit xmax made a full transaction id next to the snapshot's
    -- (pg_xact_status needs one): the nearest one, within 2^31 either side.
    v_next := pg_snapshot_xmax(pg_current_snapshot())::text::numeric;
    IF EXISTS (
           SELECT FROM pg_catalog.pg_attribute a,
                  LATERAL (SELECT (a.xmax::text::numeric - mod(v_next, 4294967296)
                                   + 6442450944) % 4294967296 - 2147483648 AS d) x
            WHERE a.attrelid = p_target AND a.attnum > 0
              AND a.xmax OPERATOR(pg_catalog.<>) '0'::xid
              AND v_next + x.d >= 3
              AND pg_xact_status((v_next + x.d)::text::xid8) = 'committed') THEN
        RAISE EXCEPTION 'the columns of % changed after this transaction''s snapshot was taken',
                        p_target
            USING ERRCODE = '40001',
                  HINT = 'Run it again in a new transaction: it then sees the change (a job '
                         'whose columns changed fails for good).';
    END IF;
END
$$;
