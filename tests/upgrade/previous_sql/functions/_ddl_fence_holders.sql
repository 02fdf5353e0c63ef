CREATE OR REPLACE FUNCTION pgjobs._ddl_fence_holders()
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Who holds the DDL fence (pgjobs.ddl_fence IN EXCLUSIVE MODE, granted)
-- other than a commit under way: a DDL transaction that fired the commit
-- trigger early (SET CONSTRAINTS ALL IMMEDIATE after its DDL) and goes on,
-- idle or running, or a prepared DDL transaction (PREPARE TRANSACTION). While
-- one holds it every delete and backfill page of the database returns
-- 'blocked' (pgjobs._ddl_fence_epoch: a page never waits for it) and no
-- running job makes progress. A commit holds it for microseconds: a
-- session seen active less than 1 s ago in its COMMIT (END, PREPARE
-- TRANSACTION) or in the only statement of its transaction is left out. The words name each
-- holder and how to end it; NULL: nobody. pgjobs.doctor reports it
-- (engine.ddl_fence_held). A role that may not see other roles' sessions
-- (pg_read_all_stats) sees their pid and not their state: they are named.
-- Locks nothing.
BEGIN
    RETURN (
        SELECT string_agg(CASE
                   WHEN l.pid IS NULL THEN
                       format('prepared transaction %L (end it: COMMIT PREPARED %L, or '
                              'ROLLBACK PREPARED %L)', p.gid, p.gid, p.gid)
                   ELSE
                       format('pid %s (%s, %s since %s; end it: SELECT '
                              'pg_terminate_backend(%s))', l.pid,
                              coalesce(a.usename::text, 'role not visible'),
                              coalesce(a.state, 'state not visible'),
                              coalesce(to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS'), '?'),
                              l.pid)
               END, '; ' ORDER BY l.pid NULLS FIRST, p.gid)
          FROM pg_catalog.pg_locks l
          LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
          -- A prepared transaction's locks have no pid; its own xid lock
          -- shares their virtualtransaction.
          LEFT JOIN (pg_catalog.pg_locks x
                     JOIN pg_catalog.pg_prepared_xacts p ON p.transaction = x.transactionid)
                 ON l.pid IS NULL AND x.locktype = 'transactionid' AND x.pid IS NULL
                    AND x.virtualtransaction = l.virtualtransaction
         WHERE l.locktype = 'relation'
           AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                              WHERE d.datname = current_database())
           AND l.relation = 'pgjobs.ddl_fence'::regclass
           AND l.mode = 'ExclusiveLock' AND l.granted
           -- A commit under way: active less than 1 s, and its statement
           -- is the commit (COMMIT, END, PREPARE TRANSACTION) or the
           -- transaction's only one (a DDL outside a transaction block).
           -- Active alone is no commit: a holder that goes on running short
           -- statements is active, each begun less than 1 s ago, nearly
           -- all the time, and would never be named.
           AND (l.pid IS NULL
                OR NOT coalesce(a.state = 'active'
                                AND a.state_change > clock_timestamp() - interval '1 second'
                                AND (a.query_start = a.xact_start
                                     OR a.query ~* '^\s*(commit|end|prepare\s+transaction)\M'),
                                false)));
END
$$;

COMMENT ON FUNCTION pgjobs._ddl_fence_holders() IS
'Who holds the DDL fence (pgjobs.ddl_fence EXCLUSIVE) past a commit: a DDL transaction that ran '
'SET CONSTRAINTS ALL IMMEDIATE and went on, or a prepared one; every delete and backfill page is '
'blocked meanwhile. NULL: nobody. How to end each is in the words.';
