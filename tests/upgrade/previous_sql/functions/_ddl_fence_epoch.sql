CREATE OR REPLACE FUNCTION pgjobs._ddl_fence_epoch()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The DDL epoch (pgjobs.ddl_fence, migration 0091), that table locked IN
-- ROW SHARE MODE to the end of the caller's transaction. A delete or
-- backfill page (pgjobs._run_page) calls it before its trust verdict and
-- checks in full when the epoch is not the one its verdict saw. Held, the
-- lock makes a DDL transaction's commit wait for the page
-- (pgjobs._ddl_fence_commit takes EXCLUSIVE), and a page that asks while a
-- commit holds it gives up (below); one that got it reads, in a statement
-- of its own (a snapshot taken after the lock: READ COMMITTED), the epoch
-- of every commit before: no DDL commits between the page's verdict and
-- its statements.
-- A table lock and not the row's FOR SHARE: a waiting EXCLUSIVE request
-- queues the later ROW SHARE ones behind it (row share locks let new
-- lockers pass a waiting UPDATE, so overlapping pages of several runners
-- could starve a DDL's commit), and it writes no WAL, no multixact.
-- It does not wait for the lock (NOWAIT, 55P03): the caller holds its
-- target (ACCESS SHARE, pgjobs._hold_target) by then, and a page waiting
-- here behind a migration that fired the commit trigger early (SET
-- CONSTRAINTS ALL IMMEDIATE: EXCLUSIVE held to its end) held the target
-- for the migration's remainder, and closed a lock cycle with the
-- migration's next ALTER TABLE of it (a "deadlock detected", the page's or
-- the migration's, h87). A commit under way holds it for microseconds: the
-- page is tried again ('blocked').
-- REPEATABLE READ or SERIALIZABLE (a default_transaction_isolation): the
-- transaction's snapshot may predate a commit that the catalogs, read
-- afresh, show; FOR SHARE then raises 40001 when the epoch row changed
-- since (the caller tries again in a new transaction). NULL: no row.
DECLARE
    v_epoch bigint;
BEGIN
    LOCK TABLE pgjobs.ddl_fence IN ROW SHARE MODE NOWAIT;
    IF current_setting('transaction_isolation') = 'read committed' THEN
        SELECT f.epoch INTO v_epoch FROM pgjobs.ddl_fence f;
    ELSE
        SELECT f.epoch INTO v_epoch FROM pgjobs.ddl_fence f FOR SHARE;
    END IF;
    RETURN v_epoch;
END
$$;

COMMENT ON FUNCTION pgjobs._ddl_fence_epoch() IS
'The DDL epoch (pgjobs.ddl_fence), that table locked IN ROW SHARE MODE to the end of the '
'transaction, so no DDL commits before the caller does. Delete and backfill pages run the full '
'trust check when it moved since their last.';
