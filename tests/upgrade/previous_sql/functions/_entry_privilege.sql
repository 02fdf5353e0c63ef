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
-- The privilege on the target that a call of client entry point p_entry
-- (pgjobs._enter keeps it in setting pgjobs.entry) needs whatever its
-- arguments: a read (visible, visible_count, mask, channel) SELECT, a
-- submit of a built-in kind that kind's (pgjobs._kind_privilege, the one
-- map). NULL where the arguments decide (submit and submit_items: the
-- kind; preview: its options). pgjobs._target names it to a caller with no
-- privilege on the table, registered or not, as the privilege check after
-- it names it on a registered table. Locks nothing.
BEGIN
    RETURN CASE
        WHEN p_entry IN ('visible', 'visible_count', 'mask', 'channel') THEN 'SELECT'
        WHEN p_entry = 'submit_delete' THEN pgjobs._kind_privilege('delete')
        WHEN p_entry = 'submit_backfill' THEN pgjobs._kind_privilege('backfill')
        WHEN p_entry = 'submit_export' THEN pgjobs._kind_privilege('export')
        WHEN p_entry = 'submit_import' THEN pgjobs._kind_privilege('import')
        END;
END
$$;
