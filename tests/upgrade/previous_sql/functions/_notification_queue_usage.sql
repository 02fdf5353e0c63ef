CREATE OR REPLACE FUNCTION pgjobs._notification_queue_usage()
RETURNS double precision
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The fraction (0..1) of the shared NOTIFY queue in use, as
-- pgjobs._notify sees it. A function of its own so that tests can replace
-- it in their own database to play a nearly full queue (the real one holds
-- 8 GB and cannot be filled in a test). Locks nothing.
-- PL/pgSQL rather than SQL: a SQL function with SET clauses is planned
-- again on every call, and every event batch asks.
BEGIN
    RETURN pg_catalog.pg_notification_queue_usage();
END
$$;
