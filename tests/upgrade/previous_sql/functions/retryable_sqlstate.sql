CREATE OR REPLACE FUNCTION pgjobs.retryable_sqlstate(p_sqlstate text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- pgjobs' one retry policy for database errors: whether an attempt that
-- failed with SQLSTATE p_sqlstate may be retried (after backoff, while
-- attempts are left). Transient classes retry: 08 connection exception,
-- 40 transaction rollback (serialization failure, deadlock), 53
-- insufficient resources, 55 object not in prerequisite state (lock not
-- available, object in use), 57 operator intervention (query canceled by a
-- timeout, admin shutdown), 58 system error (I/O). Everything else does not:
-- data and privilege errors, and class XX (internal error, data or index
-- corrupted), which a retry does not heal and would only repeat. The engine's
-- pages (pgjobs._run_page) and the Python workers (through pgjobs.fail's
-- caller, queries.FAIL_BY_SQLSTATE) both ask this function. NULL or an
-- unknown shape: false. Locks nothing.
SELECT coalesce(p_sqlstate ~ '^(08|40|53|55|57|58)[0-9A-Z]{3}$', false)
$$;

COMMENT ON FUNCTION pgjobs.retryable_sqlstate(text) IS
'The retry policy for database errors: true when an attempt that failed with this SQLSTATE '
'may be retried (classes 08, 40, 53, 55, 57, 58); false otherwise, class XX included.';
