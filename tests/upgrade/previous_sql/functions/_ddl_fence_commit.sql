CREATE OR REPLACE FUNCTION pgjobs._ddl_fence_commit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET lock_timeout = 0
AS $$
-- The deferred constraint trigger ddl_fence_marks_commit of
-- pgjobs.ddl_fence_marks (migration 0091): fires at the commit of a
-- transaction that pgjobs._ddl_fence_mark marked, after its statements.
-- Locks pgjobs.ddl_fence IN EXCLUSIVE MODE (it waits for the delete and
-- backfill pages in flight, which hold ROW SHARE to their commit:
-- pgjobs._ddl_fence_epoch; a page that asks meanwhile queues behind it),
-- bumps the epoch and deletes the mark, so the table keeps no committed
-- row. The lock is held from here to the end of the commit: a page waits
-- that long (microseconds; the commit's WAL flush, a synchronous standby's
-- answer) and then reads the new epoch and checks in full. So no DDL
-- commits between a page's trust verdict and its last statement.
-- lock_timeout 0: a DDL whose session set a short lock_timeout must not
-- fail at its commit for a page in flight (a page gives up its own waits
-- after 200 ms, so a page waiting for a lock this transaction holds ends;
-- and the wait runs with a deadlock_timeout of 10 min, so the cycle is the
-- page's to find, below). A SET CONSTRAINTS ALL
-- IMMEDIATE in that transaction fires this at once instead, and the lock
-- is then held to the commit (pages wait for it: the fence h74 dropped).
DECLARE
    v_deadlock_timeout text := current_setting('deadlock_timeout');
BEGIN
    -- The wait for the fence may close a lock cycle with a page: the page
    -- holds ROW SHARE here and waits for a table this transaction holds
    -- (ALTER TABLE or CREATE INDEX on the target or a table it reaches).
    -- The deadlock check runs in whichever session waited its
    -- deadlock_timeout first, and fails that one: with a deadlock_timeout
    -- under a page's 200 ms lock_timeout that was this COMMIT (h87). Waiting
    -- here with a deadlock_timeout above any page's leaves the cycle to the
    -- page (its lock_timeout, or its own deadlock check), and the DDL
    -- commits. A superuser's setting: an owner that may not set it waits
    -- with the session's.
    BEGIN
        PERFORM set_config('deadlock_timeout', '10min', true);
    EXCEPTION WHEN insufficient_privilege OR cant_change_runtime_param THEN
        NULL;
    END;
    LOCK TABLE pgjobs.ddl_fence IN EXCLUSIVE MODE;
    PERFORM set_config('deadlock_timeout', v_deadlock_timeout, true);
    UPDATE pgjobs.ddl_fence SET epoch = epoch + 1;
    -- Its own mark, and any a commit left behind while this function could
    -- not write (below): every transaction older than the snapshot's xmin
    -- has ended.
    DELETE FROM pgjobs.ddl_fence_marks m
     WHERE m.xid = NEW.xid OR m.xid < pg_snapshot_xmin(pg_current_snapshot());
    RETURN NULL;
EXCEPTION WHEN insufficient_privilege OR undefined_table THEN
    -- This function's owner may not lock or write the fence's tables (an
    -- owner changed one object at a time): the DDL commits unfenced, with
    -- a warning, rather than every DDL of the database failing at its
    -- commit; the pages keep the 1 s window, and pgjobs.doctor warns
    -- (engine.ddl_fence). Any other error (a deadlock, a cancel) fails the
    -- commit: a DDL that committed unbumped while a page waited for it
    -- would run under that page's old verdict.
    RAISE WARNING 'pgjobs: the DDL fence did not record this commit: %', SQLERRM
        USING HINT = 'SELECT * FROM pgjobs.doctor() WHERE check_name = ''engine.ddl_fence''';
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION pgjobs._ddl_fence_commit() IS
'Constraint trigger function (ddl_fence_marks_commit, deferred to the commit): bumps '
'pgjobs.ddl_fence.epoch under an EXCLUSIVE lock of that table, waiting for the pages in flight, '
'and deletes the transaction''s mark.';
