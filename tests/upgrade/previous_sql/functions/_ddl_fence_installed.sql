CREATE OR REPLACE FUNCTION pgjobs._ddl_fence_installed()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Whether the DDL fence (migration 0091) works: its two event triggers
-- exist, call pgjobs._ddl_fence_mark for every command (no WHEN TAG) and
-- are enabled ALWAYS, as the migration leaves them, and so is the commit
-- trigger of pgjobs.ddl_fence_marks: one enabled for origin sessions only
-- (ENABLE, 'O') does not fire in a session_replication_role = replica
-- session, whose DDL would then move no epoch, so it does not count (as
-- pgjobs._array_bounds_row judges the fence); the epoch row is there, and
-- the functions' owners may write the tables.
-- pgjobs.doctor's engine.ddl_fence reports it. Without
-- it the pages keep the 1 s window. Locks nothing.
SELECT (SELECT count(*)
          FROM pg_catalog.pg_event_trigger e
         WHERE e.evtfoid = 'pgjobs._ddl_fence_mark()'::regprocedure
           AND e.evtenabled = 'A' AND e.evttags IS NULL
           AND (e.evtname, e.evtevent) IN (('pgjobs_ddl_fence', 'ddl_command_end'),
                                           ('pgjobs_ddl_fence_drop', 'sql_drop'))) = 2
   AND EXISTS (SELECT FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid = 'pgjobs.ddl_fence_marks'::regclass
                  AND t.tgname = 'ddl_fence_marks_commit'
                  AND t.tgfoid = 'pgjobs._ddl_fence_commit()'::regprocedure
                  AND t.tgenabled = 'A' AND t.tgdeferrable AND t.tginitdeferred)
   AND EXISTS (SELECT FROM pgjobs.ddl_fence)
   -- and the owners of the two functions (they run as them) may do their
   -- part: they warn and go on without it otherwise.
   AND (SELECT has_table_privilege(p.proowner, 'pgjobs.ddl_fence_marks', 'INSERT')
          FROM pg_catalog.pg_proc p WHERE p.oid = 'pgjobs._ddl_fence_mark()'::regprocedure)
   AND (SELECT has_table_privilege(p.proowner, 'pgjobs.ddl_fence', 'UPDATE')
               AND has_table_privilege(p.proowner, 'pgjobs.ddl_fence', 'SELECT')
               AND has_table_privilege(p.proowner, 'pgjobs.ddl_fence_marks', 'DELETE')
               AND has_table_privilege(p.proowner, 'pgjobs.ddl_fence_marks', 'SELECT')
          FROM pg_catalog.pg_proc p WHERE p.oid = 'pgjobs._ddl_fence_commit()'::regprocedure)
$$;

COMMENT ON FUNCTION pgjobs._ddl_fence_installed() IS
'Whether the DDL fence''s event triggers (pgjobs_ddl_fence, pgjobs_ddl_fence_drop) and its commit '
'trigger are installed and enabled ALWAYS (a session_replication_role = replica session fires them '
'too); without them delete and backfill pages re-check trust at most '
'once a second.';
