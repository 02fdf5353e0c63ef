CREATE OR REPLACE FUNCTION pgjobs._insert_job_row(
    p_kind text,
    p_target regclass,
    p_scope text,
    p_payload jsonb,
    p_options jsonb,
    p_extra_options text[] DEFAULT '{}',
    p_predicate text DEFAULT NULL,
    p_assignments text DEFAULT NULL,
    p_reg pgjobs.target_registry DEFAULT NULL)
RETURNS pgjobs.jobs
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
AS $$
-- The one place a job row is written (pgjobs._insert_job announces it;
-- pgjobs._submit_items_as announces it once its items are counted, so the
-- `submitted` event carries the total). Validates the common options
-- (priority, at most the administrator's max_client_priority for
-- non-administrators; max_attempts, run_at, on_conflict, lease; for writing kinds
-- the throttling ones too, with the administrator's defaults merged in:
-- pgjobs._throttle_options) and rejects unknown ones (kind-specific keys
-- are listed in p_extra_options and checked by the
-- caller), holds a client to its pending jobs and kinds
-- (pgjobs._require_client_room), applies the gate for writing kinds, gives an export or import
-- its turn between tenants (queued_at, pgjobs._turn_at_submit) and inserts;
-- it sends no event. Every check runs before the INSERT: a bad argument writes
-- nothing. Every submit passes here, so this is where the session's
-- pgjobs.allowed_scopes is enforced for submits (42501).
--
-- Locks: for writing kinds the row of (target, scope) in
-- pgjobs.scope_locks (pgjobs._lock_scope), so that two `on_conflict: reject` submits cannot both
-- pass the check; for a registered target its registration's row FOR KEY
-- SHARE (pgjobs.register_target takes it FOR UPDATE when the columns
-- change).
DECLARE
    v_key text;
    v_priority integer;
    v_max_attempts integer;
    v_run_at timestamptz;
    v_on_conflict text;
    v_lease interval;
    v_writes boolean := pgjobs._writes(p_kind);
    v_job pgjobs.jobs;
    v_reg pgjobs.target_registry;
    v_grant_hint text;
    v_columns jsonb;
    v_compiled text;
    v_kept bigint;
    v_counted pgjobs.jobs;
BEGIN
    IF p_target IS NULL THEN
        RAISE EXCEPTION 'target must not be null' USING ERRCODE = '22023',
            HINT = 'Pass the table as a regclass, e.g. ''public.user_table_rows''.';
    END IF;
    IF p_scope IS NULL OR length(p_scope) > 1000 THEN
        RAISE EXCEPTION 'scope must be a non-null text of at most 1000 characters'
            USING ERRCODE = '22023',
            HINT = 'Pass the value of the target''s scope column as text, e.g. ''42''.';
    END IF;
    -- A registered target's scope is stored canonical (one tenant, one
    -- text: the gate, on_conflict and the mask compare it as text); a
    -- custom kind's unregistered table keeps the text as given.
    -- (Through pgjobs._target: the cast runs the scope type's code, so an
    -- untrusted target is refused here too, 42501, for custom kinds as well.)
    -- (p_reg: the caller looked the target up and checked it with
    -- pgjobs._target in this call already; not again. It is also the
    -- registration the caller checked and compiled the job against, which
    -- the lock below compares with the registry: read again here instead, a
    -- registration committed between the caller's read and this one would
    -- pass unseen. So a job that comes with a compiled predicate must come
    -- with its registration: 22023 otherwise.)
    IF p_predicate IS NOT NULL AND p_reg.target IS DISTINCT FROM p_target THEN
        RAISE EXCEPTION '% with a predicate needs the registration it was compiled '
                        'against', pgjobs._a_job(p_kind)
            USING ERRCODE = '22023',
                  HINT = 'Pass the registration the predicate was compiled from as p_reg '
                         '(pgjobs._target(target), read before compiling).';
    END IF;
    IF p_reg.target IS NOT NULL AND p_reg.target = p_target THEN
        v_reg := p_reg;
        p_scope := pgjobs._canonical_scope(v_reg, p_scope);
    ELSIF EXISTS (SELECT 1 FROM pgjobs.target_registry r WHERE r.target = p_target) THEN
        v_reg := pgjobs._target(p_target);
        p_scope := pgjobs._canonical_scope(v_reg, p_scope);
    END IF;
    PERFORM pgjobs._require_scope(p_target, p_scope);
    -- The engine's own grants for this kind (pgjobs._engine_grant_problem):
    -- refused here, not by a bare "permission denied" at its first page.
    IF v_reg.target IS NOT NULL THEN
        SELECT p.message, p.hint INTO v_key, v_grant_hint
          FROM pgjobs._engine_grant_problem(p_target, p_kind, p_payload) p;
        IF v_key IS NOT NULL THEN
            RAISE EXCEPTION '%', v_key USING ERRCODE = '42501', HINT = v_grant_hint;
        END IF;
    END IF;
    IF p_payload IS NULL OR jsonb_typeof(p_payload) <> 'object' THEN
        RAISE EXCEPTION 'payload must be a JSON object' USING ERRCODE = '22023',
            HINT = 'Pass ''{}'' for no payload.';
    END IF;
    IF octet_length(p_payload::text) > 1048576 THEN
        RAISE EXCEPTION 'payload is % bytes; the limit is 1 MiB', octet_length(p_payload::text)
            USING ERRCODE = '22023',
            HINT = 'Keep large inputs in a table or object storage and pass a reference.';
    END IF;
    -- The common options (and the throttling ones for writing kinds, with
    -- the defaults merged in), unknown ones refused: pgjobs._job_options,
    -- which a submit also calls before it checks the storage allow-list.
    SELECT o.o_options, o.o_priority, o.o_max_attempts, o.o_run_at, o.o_on_conflict, o.o_lease
      INTO p_options, v_priority, v_max_attempts, v_run_at, v_on_conflict, v_lease
      FROM pgjobs._job_options(p_kind, p_options, p_extra_options) o;

    -- A client's pending jobs and custom kinds are capped, every kind alike
    -- (55006; set_defaults' max_pending_per_client, max_kinds_per_client).
    PERFORM pgjobs._require_client_room(
        (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = pgjobs._caller()), p_kind);
    -- And so are the jobs it keeps, finished ones too until pgjobs.prune
    -- (55006; set_defaults' max_jobs_kept_per_client): a new row each submit.
    PERFORM pgjobs._require_client_kept_room(
        (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = pgjobs._caller()));
    IF v_writes THEN
        PERFORM pgjobs._lock_scope(p_target, p_scope);
        -- A client's writers of one scope are capped (55006): each waits in
        -- the claims' queue, which every tenant's claim walks.
        PERFORM pgjobs._require_queue_room(p_target, p_scope);
        -- Would a writer queued last wait? (The place after every other is
        -- the largest bigint: then any writer of the scope that holds the
        -- gate, by the gate's own rule, is ahead of it.)
        IF v_on_conflict = 'reject' AND NOT pgjobs._writer_may_start(
                p_target, p_scope, 9223372036854775807) THEN
            RAISE EXCEPTION 'a writing job is already queued, running or paused on % scope %',
                p_target, p_scope
                USING ERRCODE = '55006',
                HINT = 'Wait for it (pgjobs.jobs), cancel it with pgjobs.cancel(id), or submit '
                       'with {"on_conflict": "queue"} to run after it.';
        END IF;
    END IF;

    -- The job was checked and compiled against v_reg's columns. A
    -- register_target (or unregister_target) that changes them refuses
    -- while a job of the target is pending, but does not see this one
    -- until it commits: so the submit holds the registration's row FOR KEY
    -- SHARE (register_target takes it FOR UPDATE when the columns change,
    -- unregister_target deletes it; a change of options alone does not
    -- wait) and looks again, the lock's wait re-reading the row as it is
    -- then. A registration committed meanwhile fails the submit (40001:
    -- submit again, it compiles against the new columns). A row lock, not
    -- an advisory one: any role may take any advisory lock (a session
    -- holding this one's key hung every submit on the target), while no
    -- client may lock pgjobs.target_registry's rows.
    IF v_reg.target IS NOT NULL THEN
        PERFORM 1 FROM pgjobs.target_registry r
         WHERE r.target = p_target
           AND (r.key_column, r.scope_column, r.created_at_column, r.document_column)
               IS NOT DISTINCT FROM (v_reg.key_column, v_reg.scope_column,
                                     v_reg.created_at_column, v_reg.document_column)
           FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the registration of % changed while the job was being submitted',
                            p_target
                USING ERRCODE = '40001',
                      HINT = 'Submit it again: it is checked against the registration as it '
                             'is now.';
        END IF;
    END IF;

    -- The submitter by name and by oid: a role dropped and created again
    -- under the name is not the role that submitted (pgjobs._submitter_problem).
    -- A registered target's columns as the job was compiled against them:
    -- its pages, chunks and batches fail it for good if they change
    -- (pgjobs._columns_changed). A submit that compiled the job noted them
    -- before it began (pgjobs._compiling_against): changed since, the job
    -- was compiled against some other columns than these (40001).
    IF v_reg.target IS NOT NULL THEN
        v_columns := pgjobs._target_columns(p_target);
        v_compiled := coalesce(current_setting('pgjobs.compiled_columns', true), '');
        IF split_part(v_compiled, ':', 1) = p_target::oid::text
           AND v_compiled <> p_target::oid::text || ':' || md5(v_columns::text) THEN
            RAISE EXCEPTION 'the columns of % changed while the job was being submitted',
                            p_target
                USING ERRCODE = '40001',
                      HINT = 'Submit it again: it is compiled against the columns as they '
                             'are now.';
        END IF;
    END IF;
    INSERT INTO pgjobs.jobs (kind, target, scope, priority, payload, options, max_attempts,
                             run_at, lease, predicate, assignments, submitted_by,
                             submitted_by_oid, target_columns, queued_at, room_xact)
    SELECT p_kind, p_target, p_scope, v_priority, p_payload, p_options, v_max_attempts,
           v_run_at, v_lease, p_predicate, p_assignments, c.caller,
           (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = c.caller),
           v_columns,
           -- An export's or import's turn between tenants; a delete or
           -- backfill behind its scope's writer that has not started, parked.
           pgjobs._turn_at_submit(p_kind, p_target, p_scope, v_run_at),
           -- This transaction counts it toward the client's ceilings: its
           -- next submit for the client locks it exclusively
           -- (pgjobs._enter_client_room).
           pg_current_xact_id()
      FROM (SELECT pgjobs._caller() AS caller) c
    RETURNING * INTO v_job;
    -- What the job keeps as given past a small allowance (its payload and
    -- options, up to 1 MiB and more, and the predicate and assignments
    -- compiled from them, times the jobs a client may keep) counts toward
    -- the client's max_item_bytes_per_client with its items, exclude lists
    -- and rejects (pgjobs._job_input_bytes, pgjobs._keep_client_bytes).
    -- The first 4096 bytes of each job are held by max_jobs_kept_per_client
    -- instead: a common submit counts nothing and takes no lock. A
    -- delete's predicate is counted by pgjobs._submit_delete_as once it is
    -- in its final form (a long exclude list leaves it for
    -- pgjobs.job_exclusions, counted there, and not twice here), with its
    -- survivors: here its row counts without it.
    v_counted := v_job;
    IF p_kind = 'delete' THEN
        v_counted.predicate := NULL;
    END IF;
    v_kept := pgjobs._job_input_bytes(v_counted);
    IF v_kept > 0 THEN
        PERFORM pgjobs._keep_client_bytes(
            v_job.id, v_kept, 'payload',
            'Keep large inputs in a table or object storage and pass a reference in the '
            'payload', true);
        v_job.kept_bytes := v_kept;
    END IF;
    RETURN v_job;
END
$$;
