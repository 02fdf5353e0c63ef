-- Grants, applied last on every migrate (functions are replaced first).
-- Nothing in schema pgjobs is executable by PUBLIC. pgjobs_client may
-- submit, cancel, pause, resume, retry, read jobs and use the read path; pgjobs_admin (which is
-- a member of pgjobs_client) may do everything, including running the
-- engine. Client functions are listed by name so new overloads follow.

REVOKE ALL ON ALL ROUTINES IN SCHEMA pgjobs FROM PUBLIC;
-- The list below is the whole of what clients may execute: an install that
-- granted a function once (pgjobs._scope_allowed before stop 45) loses it
-- here when the function leaves the list.
REVOKE ALL ON ALL ROUTINES IN SCHEMA pgjobs FROM pgjobs_client;
REVOKE ALL ON ALL TABLES IN SCHEMA pgjobs FROM PUBLIC;
GRANT USAGE ON SCHEMA pgjobs TO pgjobs_client, pgjobs_admin;

GRANT EXECUTE ON ALL ROUTINES IN SCHEMA pgjobs TO pgjobs_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgjobs TO pgjobs_admin;

GRANT SELECT ON pgjobs.jobs, pgjobs.targets, pgjobs.job_items, pgjobs.job_exclusions
    TO pgjobs_client;

DO $grants$
DECLARE
    v_proc regprocedure;
BEGIN
    FOR v_proc IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace
           AND p.proname IN ('submit', 'submit_delete', 'submit_backfill', 'submit_export',
                             'submit_import', 'submit_items', 'add_items',
                             'cancel', 'mask', 'visible', 'visible_count', 'channel',
                             'canonical_scope', 'controllable',
                             'pause', 'resume', 'retry', 'stats', 'client_room',
                             -- stats() calls it as the client: SECURITY INVOKER,
                             -- [] unless the caller may read every client's total
                             '_stats_client_bytes',
                             -- ... and their SECURITY DEFINER bodies, which the
                             -- entry points call as the client (pgjobs._enter
                             -- refuses any other caller)
                             '_submit_as', '_submit_delete_as', '_submit_backfill_as',
                             '_submit_export_as', '_submit_import_as', '_submit_items_as',
                             '_add_items_as', '_cancel_as', '_mask_as',
                             '_visible_as',
                             -- pgjobs.visible's short way: NULL unless the
                             -- session's role may SELECT the table
                             '_visible_page',
                             '_visible_count_as', '_channel_as', '_canonical_scope_as',
                             '_controllable_as',
                             '_pause_as', '_resume_as', '_retry_as', '_client_room_as',
                             'preview', '_preview_as',
                             -- policy jobs_client_read (migrations 0024, 0034, 0160) and view
                             -- pgjobs.targets (0006, 0160) call them as the client; each
                             -- SECURITY DEFINER _*_as body answers only about its caller
                             -- (pgjobs._enter, pgjobs._require_self). Never the rules they
                             -- ask (_row_security_rule, _scope_allowed): those take any
                             -- role and any table (tests/test_trust_definer_surface.py).
                             '_row_security_confines', '_row_security_confines_as',
                             '_confined_targets', '_confined_targets_as',
                             '_column_read_targets', '_column_read_targets_as',
                             '_allowed_scope_keys', '_allowed_scope_keys_as',
                             '_allowed_scope_entries', '_allowed_scopes_parse',
                             -- builds a pgjobs.allowed_scopes value
                             'allowed_scopes_literal', '_json_as_jsonb',
                             -- `pgjobs watch`/`status` read them beside a queued job
                             -- (the gate's rule, compiled into _gate_holder, and
                             -- pgjobs.queries.GET_JOB ask _engine_kinds: a constant)
                             '_engine_wait', '_engine_wait_as', '_gate_holder',
                             '_engine_kinds')
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO pgjobs_client', v_proc);
    END LOOP;
END
$grants$;
