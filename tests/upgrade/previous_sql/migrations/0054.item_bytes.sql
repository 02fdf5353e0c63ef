-- pgjobs 0054: a fan-out job's items have a ceiling in bytes. Each item may
-- be up to 1 MiB and a client's job up to max_items_per_job items, so one
-- job could hold about 100 GB of pgjobs.job_items. pgjobs._items_add now
-- holds a submitter who is not an administrator to set_defaults'
-- max_item_bytes_per_job (default 64 MiB), and keeps the bytes given so far
-- in this column so that a call costs what it adds, not what the job holds.
-- NULL for every job that is not fan-out, and for fan-out jobs made before
-- this migration: _items_add counts their items once, at their next
-- add_items. No data changes; jobs in flight run as they are.
-- depends: 0047.client_room

ALTER TABLE pgjobs.jobs ADD COLUMN IF NOT EXISTS item_bytes bigint;

COMMENT ON COLUMN pgjobs.jobs.item_bytes IS
'A fan-out job''s items given so far, in bytes of the JSON text of the arrays passed to '
'submit_items and add_items (pgjobs._items_add; NULL before its first add since 0054).';
