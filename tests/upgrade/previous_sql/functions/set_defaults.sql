CREATE OR REPLACE FUNCTION pgjobs.set_defaults(p_options jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Stores administrator defaults (pgjobs.settings, key 'defaults') and
-- returns the defaults now in force (pgjobs._defaults). Keys given are
-- merged into the stored ones; a key set to JSON null goes back to its
-- built-in default. Known keys:
--   notify_target_scope (boolean, default false): events on the shared
--   NOTIFY channel `pgjobs`, which every role that can connect may
--   LISTEN to, carry the job's target and scope too.
--   max_parallel (integer 1..64, default 64): a ceiling, not a default: the
--   most parts (option "parallel") an export may ask for. submit_export
--   refuses more with 22023, whoever submits; an export submitted before it
--   was lowered is split into at most this many parts (pgjobs.export_parts_split).
--   max_client_priority (integer -1000000..1000000, default none): a
--   ceiling on option "priority" for submitters who are not administrators
--   (pgjobs_admin members, superusers): a client above it is refused with
--   22023 (pgjobs._insert_job_row), so no tenant's jobs jump every other's.
--   It holds on the priority a job gets: under a negative ceiling a
--   client's submit without option "priority" (0) is refused too.
--   Jobs submitted before it was set keep their priority.
--   max_pending_writers (integer 1..1000000, default 1000): the most
--   writing jobs (queued, running or paused) one (target, scope) may hold
--   when a submitter who is not an administrator submits or retries
--   another: 55006 beyond it (pgjobs._require_queue_room), since every
--   claim walks the writers waiting behind their scope's gate.
--   max_pending_per_client (integer 1..10000000, default 10000): the most
--   jobs of every kind together (queued, running or paused) a submitter
--   who is not an administrator may have; max_kinds_per_client (integer
--   1..100000, default 100): the most distinct custom kinds (not delete,
--   backfill, export, import) it may have such jobs of. 55006 beyond
--   either, at a submit or a retry (pgjobs._require_client_room).
--   max_items_per_job (integer 1..100000000, default 100000): the most items
--   a fan-out job may have when a submitter who is not an administrator
--   submits it (submit_items) or adds to it (add_items): 55006 beyond it
--   (pgjobs._items_add).
--   max_item_bytes_per_job (integer 1..2147483647, default 67108864, 64
--   MiB): the most bytes of items (the JSON text of the arrays given) such
--   a fan-out job may have, over the same calls: 55006 beyond it
--   (pgjobs._items_add).
--   max_rejects_per_job (integer 0..1000000, default 1000): the highest
--   option "max_rejects" a submitter who is not an administrator may give
--   an import (each reject a row of pgjobs.import_rejects of up to 64 KiB
--   characters): 22023 above it (pgjobs._submit_import_as).
--   max_jobs_kept_per_client (integer 1..100000000, default 100000): the
--   most jobs of every kind and status a submitter who is not an
--   administrator may have in pgjobs.jobs, finished ones too until
--   pgjobs.prune deletes them: 55006 beyond it at a submit
--   (pgjobs._require_client_kept_room).
--   max_item_bytes_per_client (integer 1..2147483647, default
--   1073741824, 1 GiB): the most bytes of inputs such a submitter may keep
--   over all its jobs of every status (until pgjobs.prune deletes them):
--   fan-out items, the exclude lists of more than 100 keys of its deletes
--   (pgjobs.job_exclusions), each job's payload, options and compiled
--   filter past 4096 bytes, and its imports' rejects: 55006 beyond it
--   (pgjobs._keep_client_bytes, a running total per client; an import
--   whose rejects would pass it fails).
--   max_reject_bytes_per_job (integer 1..2147483647, default 16777216, 16
--   MiB): the most bytes of rejects (pgjobs.import_rejects: octet_length of
--   each reject's reason plus of its record as kept) an import submitted by
--   a submitter who is not an administrator may keep: the batch whose
--   rejects would pass it fails the job as too many rejects do, 22000, its
--   rejects before the one that would pass it kept (pgjobs.import_batch).
--   max_client_pause (interval string, 1 second .. 100 years, default 1
--   hour): how long a writing job paused by a role that is not an
--   administrator may stay paused; then the engine cancels it
--   (pgjobs._expire_client_pauses, run by pgjobs.prune and pgjobs.run),
--   since it holds its scope's later writers. Administrators' pauses are
--   not bounded.
--   max_rows_per_second, page_delay, max_replica_lag_bytes, max_wal_rate,
--   pause_on_autovacuum, max_xact_age: the throttling options of writing
--   jobs (pgjobs._throttle_options). They are merged into the options of
--   each writing job submitted later (a job shows what it runs with; jobs
--   already submitted keep theirs); a client's job may only be stricter
--   than them (pgjobs._require_throttle_within).
-- Anything else raises 22023 and stores nothing. For administrators only
-- (no grant to pgjobs_client). Locks: the settings row.
DECLARE
    v_opt record;
    v_int record;
    v_known text;
    v_pause interval;
BEGIN
    -- Every integer setting is a row of pgjobs._integer_defaults: the hint
    -- lists them from it and one check below holds each to its range.
    SELECT 'known defaults: notify_target_scope (boolean), '
           || string_agg(format('%s (integer %s to %s: %s)', d.name, d.low, d.high,
                                d.description), ', ' ORDER BY d.ord)
           || ', max_client_pause (interval, 1 second to 100 years, default 1 hour: then a '
           || 'writing job a client paused is canceled)'
           || ', max_rows_per_second, max_replica_lag_bytes, max_wal_rate (integers, 0: no '
           || 'limit), page_delay, max_xact_age (intervals, "0": none), pause_on_autovacuum '
           || '(boolean)'
      INTO v_known
      FROM pgjobs._integer_defaults() WITH ORDINALITY d(name, low, high, description, ord);
    IF p_options IS NULL OR jsonb_typeof(p_options) <> 'object' THEN
        RAISE EXCEPTION 'defaults must be a JSON object, not %', coalesce(p_options::text, 'NULL')
            USING ERRCODE = '22023', HINT = v_known;
    END IF;
    FOR v_opt IN SELECT e.key, e.value FROM jsonb_each(p_options) e LOOP
        SELECT d.name, d.low, d.high INTO v_int
          FROM pgjobs._integer_defaults() d WHERE d.name = v_opt.key;
        IF v_opt.key NOT IN ('notify_target_scope', 'max_client_pause') AND v_int.name IS NULL
           AND NOT v_opt.key = ANY (pgjobs._throttle_keys()) THEN
            RAISE EXCEPTION 'unknown default "%"', v_opt.key
                USING ERRCODE = '22023', HINT = v_known;
        END IF;
        IF v_opt.key = 'notify_target_scope'
           AND jsonb_typeof(v_opt.value) NOT IN ('boolean', 'null') THEN
            RAISE EXCEPTION 'default "%" must be a boolean (or null to reset it), not %',
                v_opt.key, v_opt.value
                USING ERRCODE = '22023', HINT = v_known;
        END IF;
        IF v_opt.key = 'max_client_pause' AND jsonb_typeof(v_opt.value) <> 'null' THEN
            BEGIN
                v_pause := CASE WHEN jsonb_typeof(v_opt.value) = 'string'
                                THEN (v_opt.value #>> '{}')::interval END;
            EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow
                           OR interval_field_overflow THEN
                v_pause := NULL;
            END;
        END IF;
        IF v_opt.key = 'max_client_pause' AND jsonb_typeof(v_opt.value) <> 'null'
           AND (v_pause IS NULL OR v_pause < interval '1 second'
                OR v_pause > interval '100 years') THEN
            RAISE EXCEPTION 'default "max_client_pause" must be an interval from 1 second to '
                            '100 years, not %', v_opt.value
                USING ERRCODE = '22023',
                HINT = 'For example pgjobs.set_defaults(''{"max_client_pause": "4 hours"}'').';
        END IF;
        IF v_int.name IS NOT NULL AND jsonb_typeof(v_opt.value) <> 'null' THEN
            PERFORM pgjobs._option_int(v_int.name, v_opt.value, v_int.low, v_int.high);
        END IF;
    END LOOP;
    -- The throttling options are checked as a job's are (null resets).
    PERFORM pgjobs._throttle_options(jsonb_strip_nulls(p_options));
    INSERT INTO pgjobs.settings AS s (key, value)
    VALUES ('defaults', jsonb_strip_nulls(p_options))
    ON CONFLICT (key) DO UPDATE
       SET value = jsonb_strip_nulls(s.value || p_options), updated_at = now();
    RETURN pgjobs._defaults();
END
$$;

COMMENT ON FUNCTION pgjobs.set_defaults(jsonb) IS
'Stores defaults for every later job and event (an administrator''s call) and returns the '
'defaults now in force. Keys: notify_target_scope (boolean, default false: events on the shared '
'channel pgjobs carry target and scope only when true); max_parallel (the most parts an export '
'may ask for with option parallel, 1 to 64, default 64: a ceiling every submitter is held to); '
'max_client_priority (the highest option priority a submitter who is not an administrator may '
'give a job, -1000000 to 1000000, default none: above it the submit raises 22023); '
'max_pending_writers (the most writing jobs, queued, running or paused, a submitter who is not '
'an administrator may have one target and scope hold, 1 to 1000000, default 1000: a submit or '
'retry beyond it raises 55006); '
'max_pending_per_client (the most jobs of every kind, queued, running or paused, a submitter who '
'is not an administrator may have, 1 to 10000000, default 10000) and max_kinds_per_client (the '
'most distinct custom kinds, not delete, backfill, export or import, it may have such jobs of, 1 '
'to 100000, default 100): a submit or retry beyond either raises 55006; '
'max_items_per_job (the most items a submitter who is not an administrator may give one fan-out '
'job, by submit_items and add_items together, 1 to 100000000, default 100000: beyond it 55006); '
'max_item_bytes_per_job (the most bytes of items, as the JSON text of the arrays given, such a '
'submitter may give one fan-out job over the same calls, 1 to 2147483647, default 67108864 '
'(64 MiB): beyond it 55006); '
'max_item_bytes_per_client (the most bytes of inputs such a submitter may keep over all its '
'jobs, finished ones too until pgjobs.prune deletes them: fan-out items, the exclude lists of '
'more than 100 keys of its deletes, payloads past 4096 bytes a job, import rejects; 1 to '
'2147483647, default 1073741824 (1 GiB): beyond it 55006); '
'max_rejects_per_job (the highest option max_rejects such a submitter may give an import, 0 to '
'1000000, default 1000: above it the submit raises 22023); '
'max_jobs_kept_per_client (the most jobs of every kind and status, finished ones too until '
'pgjobs.prune deletes them, such a submitter may have, 1 to 100000000, default 100000: a submit '
'beyond it raises 55006); '
'max_reject_bytes_per_job (the most bytes of rejects, octet_length of each reject''s reason and '
'record as kept, an import such a submitter submitted may keep, 1 to 2147483647, default '
'16777216 (16 MiB): the batch whose rejects would pass it fails the job with 22000); '
'max_client_pause (an interval, 1 second to 100 years, default 1 hour: a writing job paused by '
'a role that is not an administrator is canceled by the engine, event canceled, once paused '
'that long, since it holds its scope''s later writers; pgjobs.retry queues it again); '
'the throttling options of writing jobs max_rows_per_second, page_delay, max_replica_lag_bytes (default 256 MB), max_wal_rate, '
'pause_on_autovacuum (default true), max_xact_age, merged into the options of every writing job '
'submitted later (0 turns a limit off). A key set to null goes back to its default; an unknown '
'key or a bad value raises 22023 and stores nothing.';
