CREATE OR REPLACE FUNCTION pgjobs._throttle_keys()
RETURNS text[]
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The throttling options of writing jobs (delete, backfill, import), which
-- pgjobs.set_defaults also takes (pgjobs._throttle_options validates them;
-- pgjobs._throttle applies them). Locks nothing.
SELECT ARRAY['max_rows_per_second', 'page_delay', 'max_replica_lag_bytes', 'max_wal_rate',
             'pause_on_autovacuum', 'max_xact_age']::text[];
$$;
