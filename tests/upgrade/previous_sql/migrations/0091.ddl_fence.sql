-- pgjobs 0091: no delete or backfill page runs after a DDL that changes
-- what it reaches without a trust check that sees it (the "1 s window").
-- The full check (pgjobs._untrusted_roles) ran at an attempt's first page
-- and then at most once a second: a DDL committed between two pages (a rule
-- on the target writing into a client's table, REFERENCES or TRIGGER
-- granted to a client who then adds a cascading foreign key or a trigger, a
-- reached table given to a client, a policy reading a client's view) let the
-- client's trigger run as the runner on the pages of that second.
--
-- The fence, taken only AT COMMIT of a DDL transaction:
-- * event triggers pgjobs_ddl_fence (ddl_command_end) and
--   pgjobs_ddl_fence_drop (sql_drop) call pgjobs._ddl_fence_mark, which
--   inserts one row per transaction (its xid) into ddl_fence_marks: a lock
--   nobody else needs, so an open migration transaction holds up no page;
-- * the DEFERRABLE INITIALLY DEFERRED constraint trigger
--   ddl_fence_marks_commit (pgjobs._ddl_fence_commit) fires at that
--   transaction's commit: it locks ddl_fence IN EXCLUSIVE MODE, bumps the
--   epoch and deletes the mark (so the table holds no committed row), the
--   lock held from the commit's start to its end;
-- * each page locks ddl_fence IN ROW SHARE MODE to its own commit and reads
--   the epoch (pgjobs._ddl_fence_epoch); a verdict whose epoch differs is no
--   verdict, the page checks in full. A committing DDL waits for the pages
--   in flight, a page waits for a commit under way (then reads its epoch).
-- Only a superuser may create event triggers: run by another role, this
-- creates the tables and not the event triggers, the pages keep the 1 s
-- window and pgjobs.doctor() warns (engine.ddl_fence) with the statements.
-- Jobs in flight: their next page checks in full once (their verdict holds
-- no epoch). No data changes.
-- depends: 0069.channel_name_secret

CREATE TABLE IF NOT EXISTS pgjobs.ddl_fence (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    epoch bigint NOT NULL DEFAULT 0
);
INSERT INTO pgjobs.ddl_fence (id) VALUES (true) ON CONFLICT DO NOTHING;

COMMENT ON TABLE pgjobs.ddl_fence IS
'One row: epoch counts the committed DDL transactions of this database (event triggers '
'pgjobs_ddl_fence and pgjobs_ddl_fence_drop, pgjobs._ddl_fence_mark and pgjobs._ddl_fence_commit); '
'a delete or backfill page locks the table IN ROW SHARE MODE and runs the full trust check when '
'the epoch moved since its verdict (pgjobs._ddl_fence_epoch).';

CREATE TABLE IF NOT EXISTS pgjobs.ddl_fence_marks (
    xid xid8 PRIMARY KEY
);

COMMENT ON TABLE pgjobs.ddl_fence_marks IS
'A DDL transaction''s mark (its xid), inserted by pgjobs._ddl_fence_mark and deleted at that '
'transaction''s commit by pgjobs._ddl_fence_commit (constraint trigger ddl_fence_marks_commit): '
'no committed row stays.';

-- Stand-ins: sql/functions/_ddl_fence_*.sql replace them at every migrate,
-- after this.
CREATE OR REPLACE FUNCTION pgjobs._ddl_fence_commit()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION pgjobs._ddl_fence_mark()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NULL;
END
$$;

DROP TRIGGER IF EXISTS ddl_fence_marks_commit ON pgjobs.ddl_fence_marks;
CREATE CONSTRAINT TRIGGER ddl_fence_marks_commit
    AFTER INSERT ON pgjobs.ddl_fence_marks
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION pgjobs._ddl_fence_commit();
-- Also under session_replication_role = replica (a restore, a superuser's
-- session): the event triggers fire there too (ENABLE ALWAYS, below).
ALTER TABLE pgjobs.ddl_fence_marks ENABLE ALWAYS TRIGGER ddl_fence_marks_commit;

DO $fence$
BEGIN
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger e
                        WHERE e.evtname IN ('pgjobs_ddl_fence', 'pgjobs_ddl_fence_drop')) THEN
        CREATE EVENT TRIGGER pgjobs_ddl_fence ON ddl_command_end
            EXECUTE FUNCTION pgjobs._ddl_fence_mark();
        CREATE EVENT TRIGGER pgjobs_ddl_fence_drop ON sql_drop
            EXECUTE FUNCTION pgjobs._ddl_fence_mark();
        ALTER EVENT TRIGGER pgjobs_ddl_fence ENABLE ALWAYS;
        ALTER EVENT TRIGGER pgjobs_ddl_fence_drop ENABLE ALWAYS;
    END IF;
END
$fence$;
