CREATE OR REPLACE FUNCTION pgjobs._advisory_xact_lock(p_key bigint, p_what text)
RETURNS void
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Takes the transaction advisory lock p_key (pg_advisory_xact_lock) that
-- serializes p_what (register_target and unregister_target of one table,
-- pgjobs.schedule), waiting at most the caller's lock_timeout, or 10 s when
-- it has none. Advisory locks need no privilege: any role that can connect
-- may take any key, and hold it outside any transaction, where no idle
-- timeout ends it; these calls waited for such a session forever, saying
-- nothing. Past the wait this raises 55P03 naming the sessions that hold the
-- key (pgjobs._lock_holders). The caller's lock_timeout is left as it was.
-- Locks: p_key, to the end of the transaction.
DECLARE
    v_timeout text := current_setting('lock_timeout');
    v_wait text := CASE WHEN v_timeout IN ('0', '0ms', '0s') THEN '10s' ELSE v_timeout END;
    v_holders text;
BEGIN
    BEGIN
        PERFORM set_config('lock_timeout', v_wait, true);
        PERFORM pg_advisory_xact_lock(p_key);
    EXCEPTION WHEN lock_not_available THEN
        v_holders := pgjobs._lock_holders(NULL, p_key);
        RAISE EXCEPTION 'waited % for the lock that serializes %: %', v_wait, p_what,
                        coalesce(v_holders || ' holds it',
                                 'the session that held it let go just now')
            USING ERRCODE = '55P03',
                  HINT = CASE WHEN v_holders IS NULL THEN 'Run it again.'
                         ELSE format('Run it again once that session is done: pgjobs holds the '
                                     'lock for a moment, but any session may take the key '
                                     '(pg_advisory_lock(%s)); if it stays, end that session '
                                     '(SELECT pg_terminate_backend(pid)).', p_key) END;
    END;
    PERFORM set_config('lock_timeout', v_timeout, true);
END
$$;
