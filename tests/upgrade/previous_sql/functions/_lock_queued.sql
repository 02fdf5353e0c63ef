CREATE OR REPLACE FUNCTION pgjobs._lock_queued(p_relation regclass)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The other sessions of this database whose request for p_relation, in a
-- mode that conflicts with a page's (SHARE and stronger), is queued, not
-- granted: an ALTER TABLE waiting behind a long query holds up every later
-- request for the table, a page's included, as long as it waits, and
-- pgjobs._lock_holders (granted locks only) finds nobody. Each as 'pid N
-- (role R, application "A", state S, MODE requested, queued behind pid M,
-- ...)', comma-separated, or NULL when none is queued (any more), for
-- pgjobs._run_step's hand-back. Locks nothing.
DECLARE
    v_queued text;
BEGIN
    PERFORM pg_stat_clear_snapshot();  -- pg_stat_activity as it is now
    SELECT string_agg(format('pid %s (role %s, application %s, %s, %s requested, queued '
                             'behind %s)', l.pid, coalesce(a.usename::text, '?'),
                             coalesce(quote_ident(nullif(a.application_name, '')), 'none'),
                             coalesce(a.state, 'state unknown'), l.mode,
                             coalesce((SELECT string_agg('pid ' || b, ', ')
                                         FROM unnest(pg_blocking_pids(l.pid)) b),
                                      'nobody any more')),
                      ', ' ORDER BY l.pid)
      INTO v_queued
      FROM pg_catalog.pg_locks l
      LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE NOT l.granted AND l.pid <> pg_backend_pid()
       AND l.locktype = 'relation' AND l.relation = p_relation
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                          WHERE d.datname = current_database())
       AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                      'AccessExclusiveLock');
    RETURN v_queued;
END
$$;
