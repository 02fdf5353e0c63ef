CREATE OR REPLACE FUNCTION pgjobs._lock_holders(p_relation regclass, p_key bigint)
RETURNS text
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Who holds the lock a pgjobs statement just gave up waiting for, for its
-- message: the other sessions of this database that hold, granted, the
-- advisory key p_key (when p_relation is NULL: the one-key form,
-- pg_advisory_lock(bigint)), or a lock on p_relation in a mode that
-- conflicts with a page's (SHARE and stronger: ALTER TABLE, LOCK TABLE,
-- CREATE INDEX, VACUUM FULL). Each as 'pid N (role R, application "A",
-- state S, MODE)', comma-separated, or NULL when none does (any more).
-- pg_locks and the pid, role and state columns of pg_stat_activity are
-- readable by every role. Locks nothing.
DECLARE
    v_holders text;
BEGIN
    PERFORM pg_stat_clear_snapshot();  -- pg_stat_activity as it is now
    SELECT string_agg(format('pid %s (role %s, application %s, %s, %s)', l.pid,
                             coalesce(a.usename::text, '?'),
                             coalesce(quote_ident(nullif(a.application_name, '')), 'none'),
                             coalesce(a.state, 'state unknown'), l.mode),
                      ', ' ORDER BY l.pid)
      INTO v_holders
      FROM pg_catalog.pg_locks l
      LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.granted AND l.pid <> pg_backend_pid()
       AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                          WHERE d.datname = current_database())
       AND CASE WHEN p_relation IS NULL
                THEN l.locktype = 'advisory' AND l.objsubid = 1
                     AND ((l.classid::bigint << 32) | l.objid::bigint) = p_key
                ELSE l.locktype = 'relation' AND l.relation = p_relation
                     AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                                    'AccessExclusiveLock') END;
    RETURN v_holders;
END
$$;
