CREATE OR REPLACE FUNCTION pgjobs._ddl_fence_mark()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The event triggers pgjobs_ddl_fence (ddl_command_end) and
-- pgjobs_ddl_fence_drop (sql_drop), which migration 0091 creates when run
-- by a superuser: marks the DDL's transaction (one row of
-- pgjobs.ddl_fence_marks, its xid; the second command of a transaction
-- inserts nothing), and the mark's deferred constraint trigger bumps
-- pgjobs.ddl_fence.epoch at that transaction's commit
-- (pgjobs._ddl_fence_commit). Nothing here locks a row or a table that a
-- page or another session needs: an open migration transaction holds up no
-- page (the lock an UPDATE of the epoch here would hold to the commit did,
-- h74). A DDL in a subtransaction rolled back leaves no mark (nor its
-- trigger event); a transaction rolled back bumps nothing.
--
-- Every role's DDL is marked, a client's too: a client that gained
-- TRIGGER or REFERENCES on a reached table, or a table of it, brings its
-- code in by DDL of its own, and the trusted role's GRANT or REASSIGN that
-- made that possible may be one no event trigger sees (REASSIGN OWNED,
-- GRANT role). Skipped: commands on temporary objects only (a backfill
-- page's own temporary tables), and DROP commands at ddl_command_end
-- (sql_drop sees what they dropped).
-- SECURITY DEFINER: it runs as pgjobs' owner, never as the DDL's role (a
-- superuser's, too): the owner may replace this body, and an event
-- trigger's function that ran as the DDL's role would run the owner's code
-- as every superuser doing DDL. No table of pgjobs (a DROP SCHEMA pgjobs
-- CASCADE under way): nothing, so no DDL of the database fails here.
BEGIN
    IF to_regclass('pgjobs.ddl_fence_marks') IS NULL THEN
        RETURN;
    END IF;
    IF TG_EVENT = 'sql_drop' THEN
        IF NOT EXISTS (SELECT FROM pg_event_trigger_dropped_objects() o
                        WHERE NOT o.is_temporary) THEN
            RETURN;
        END IF;
    ELSIF TG_TAG LIKE 'DROP %' THEN
        RETURN;
    ELSIF EXISTS (SELECT FROM pg_event_trigger_ddl_commands())
          AND NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands() d
                           WHERE d.schema_name IS NULL
                              OR d.schema_name !~ '^pg_temp(_[0-9]+)?$') THEN
        RETURN;
    END IF;
    INSERT INTO pgjobs.ddl_fence_marks (xid) VALUES (pg_current_xact_id())
        ON CONFLICT DO NOTHING;
EXCEPTION WHEN insufficient_privilege THEN
    -- This function's owner may not write the marks (an owner changed one
    -- object at a time): the DDL goes on unfenced, with a warning, rather
    -- than every DDL of the database failing here (pgjobs.doctor warns).
    RAISE WARNING 'pgjobs: the DDL fence did not mark this transaction: %', SQLERRM
        USING HINT = 'SELECT * FROM pgjobs.doctor() WHERE check_name = ''engine.ddl_fence''';
END
$$;

COMMENT ON FUNCTION pgjobs._ddl_fence_mark() IS
'Event trigger function (pgjobs_ddl_fence, pgjobs_ddl_fence_drop): marks a transaction that ran '
'DDL on anything but temporary objects (pgjobs.ddl_fence_marks), so that its commit bumps '
'pgjobs.ddl_fence.epoch (pgjobs._ddl_fence_commit) and delete and backfill pages check trust '
'in full after it.';
