CREATE OR REPLACE FUNCTION pgjobs._integer_defaults()
RETURNS TABLE (name text, low bigint, high bigint, description text)
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The integer settings pgjobs.set_defaults takes, one row each in the order
-- its hint lists them: the name, the lowest and highest value it accepts
-- (pgjobs._option_int checks them), and what the hint says of it. One table,
-- so a new setting is one row, not another copy of the check. Locks nothing.
SELECT d.name, d.low, d.high, d.description
  FROM (VALUES
    (1, 'max_parallel', 1, 64, 'the most parts an export may ask for'),
    (2, 'max_client_priority', -1000000, 1000000,
     'the highest priority a non-administrator may give a job'),
    (3, 'max_pending_writers', 1, 1000000,
     'the most writing jobs a client may have one target and scope hold'),
    (4, 'max_pending_per_client', 1, 10000000,
     'the most jobs a client may have queued, running or paused'),
    (5, 'max_kinds_per_client', 1, 100000,
     'the most custom kinds a client may have such jobs of'),
    (6, 'max_items_per_job', 1, 100000000, 'the most items a client may give one fan-out job'),
    (7, 'max_item_bytes_per_job', 1, 2147483647,
     'the most bytes of items a client may give one fan-out job'),
    (8, 'max_rejects_per_job', 0, 1000000,
     'the highest max_rejects a client may give an import'),
    (9, 'max_jobs_kept_per_client', 1, 100000000,
     'the most jobs a client may have kept, finished ones too until pgjobs.prune'),
    (10, 'max_reject_bytes_per_job', 1, 2147483647,
     'the most bytes of rejects a client''s import may keep'),
    (11, 'max_item_bytes_per_client', 1, 2147483647,
     'the most bytes of inputs a client may keep over all its jobs (items, '
     'exclude lists, payloads past 4096 bytes, import rejects)')
  ) AS d(ord, name, low, high, description)
 ORDER BY d.ord;
$$;

COMMENT ON FUNCTION pgjobs._integer_defaults() IS
'The integer settings of pgjobs.set_defaults (name, lowest and highest value, what it bounds), '
'in the order its hint lists them: one table that set_defaults checks every integer setting by.';
