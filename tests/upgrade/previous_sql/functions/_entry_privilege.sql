CREATE OR REPLACE FUNCTION pgjobs._entry_privilege(p_entry text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The privileges on the target (comma-separated, each required) that a
-- call of client entry point p_entry (pgjobs._enter keeps it in setting
-- pgjobs.entry) needs whatever its arguments and whatever pgjobs knows of
-- the table: a read (visible, visible_count, mask, channel) SELECT; a
-- submit of a built-in kind that kind's (pgjobs._kind_privilege, the one
-- map), and SELECT for a delete and a backfill, which read the rows they
-- select. NULL where the arguments decide (submit and submit_items: the
-- kind; preview: its options), or for an entry that takes no target.
-- pgjobs._require_entry asks them before the registry is read, so a
-- caller lacking one is told the same of a registered table as of any
-- other. Locks nothing.
BEGIN
    RETURN CASE
        WHEN p_entry IN ('visible', 'visible_count', 'mask', 'channel') THEN 'SELECT'
        WHEN p_entry = 'submit_delete' THEN pgjobs._kind_privilege('delete') || ', SELECT'
        WHEN p_entry = 'submit_backfill' THEN pgjobs._kind_privilege('backfill') || ', SELECT'
        WHEN p_entry = 'submit_export' THEN pgjobs._kind_privilege('export')
        WHEN p_entry = 'submit_import' THEN pgjobs._kind_privilege('import')
        END;
END
$$;
