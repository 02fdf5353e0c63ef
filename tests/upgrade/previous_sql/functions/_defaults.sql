CREATE OR REPLACE FUNCTION pgjobs._defaults()
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The administrator defaults in force: the built-in ones overlaid with
-- what pgjobs.set_defaults stored (pgjobs.settings, key 'defaults').
--   notify_target_scope (boolean, default false): events on the shared
--   channel `pgjobs` carry the job's target and scope.
--   max_parallel (integer, only when stored; else 64): the ceiling of an
--   export's option "parallel" (pgjobs._max_parallel);
--   max_client_priority (integer, only when stored; else no ceiling): the
--   highest option "priority" a submitter that is not an administrator may
--   give a job (pgjobs._insert_job_row);
--   max_pending_writers (integer, only when stored; else 1000): the most
--   writing jobs a client may have one (target, scope) hold
--   (pgjobs._max_pending_writers);
--   max_pending_per_client, max_kinds_per_client (integers, only when
--   stored; else 10000 and 100): a client's pending jobs and custom kinds
--   (pgjobs._require_client_room);
--   max_items_per_job (integer, only when stored; else 100000): the items
--   of one fan-out job a client may make (pgjobs._items_add);
--   max_item_bytes_per_job (integer, only when stored; else 67108864): the
--   bytes of items of one fan-out job a client may give (pgjobs._items_add);
--   max_rejects_per_job (integer, only when stored; else 1000): the highest
--   max_rejects a client may give an import (pgjobs._submit_import_as);
--   max_jobs_kept_per_client (integer, only when stored; else 100000): the
--   jobs of every status a client may have kept
--   (pgjobs._require_client_kept_room);
--   max_reject_bytes_per_job (integer, only when stored; else 16777216): the
--   bytes of rejects a client's import may keep (pgjobs.import_batch);
--   max_item_bytes_per_client (integer, only when stored; else 1073741824):
--   the bytes of inputs a client may keep over all its jobs (items,
--   exclude lists, payloads past 4096 bytes, rejects: pgjobs._keep_client_bytes);
-- and the throttling options of writing jobs (pgjobs._throttle_options):
--   max_replica_lag_bytes 268435456 (256 MB), pause_on_autovacuum true,
--   max_rows_per_second, page_delay, max_wal_rate, max_xact_age: null (none).
-- PL/pgSQL rather than SQL: its plan is cached for the session (a SQL
-- function that cannot be inlined is planned on every call, and every event
-- reads it). Locks nothing.
BEGIN
    RETURN '{"notify_target_scope": false, "max_replica_lag_bytes": 268435456,
          "pause_on_autovacuum": true, "max_rows_per_second": null, "page_delay": null,
          "max_wal_rate": null, "max_xact_age": null}'::jsonb
       || coalesce((SELECT s.value FROM pgjobs.settings s WHERE s.key = 'defaults'), '{}');
END
$$;
