DROP FUNCTION IF EXISTS pgjobs._require_client_item_room(bigint, bigint, bigint, text);
DROP FUNCTION IF EXISTS pgjobs._client_item_bytes(oid, bigint);
DROP FUNCTION IF EXISTS pgjobs._keep_client_bytes(bigint, bigint, text, text);

CREATE OR REPLACE FUNCTION pgjobs._keep_client_bytes(p_id bigint, p_add bigint, p_what text,
                                                     p_hint text, p_new boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one count of set_defaults' max_item_bytes_per_client (else
-- 1073741824, 1 GiB): adds p_add bytes that job p_id keeps (fan-out items,
-- a delete's exclude list, a payload past its allowance, an import's
-- rejects: p_what names them in the error) to the job's kept_bytes and to
-- its submitter's running total (pgjobs.client_room_locks.kept_bytes,
-- migration 0146), and raises 55006 when that total would pass the
-- ceiling and the caller (pgjobs._caller) is not an administrator; p_hint
-- opens the error's hint. p_new: job p_id is the one this call submits,
-- which the refusal rolls back with it, so the error names it "the job
-- being submitted", never by an id that will not exist (an addition to a
-- job kept already, add_items, names its id). Administrators are not held to it, but what they
-- add to a client's job counts for the client (it is given back with the
-- job). The total is updated in place, never summed from a snapshot: two
-- sessions adding for one client at once wait for each other's commit and
-- the second re-reads the total then (READ COMMITTED), or fails with 40001
-- (REPEATABLE READ, SERIALIZABLE: its snapshot misses the other's bytes;
-- one exception block, on this path only, says so with a hint),
-- so neither many sessions, an old snapshot nor another role's call passes
-- the ceiling. Given back by pgjobs._give_back_kept_bytes (the jobs delete
-- trigger) and pgjobs._count_reject_bytes (rejects forgotten). A job of a
-- role that no longer exists, or p_add 0, counts nothing. Only the job's
-- submitter (the very role, by oid, whatever it is called now:
-- pgjobs._is_submitter) or an administrator may make it keep bytes (42501 otherwise, before anything is
-- counted): another client that may control the job (add_items to it,
-- every right on a shared target) would spend the submitter's room, keep
-- bytes past its own ceiling (1 GiB more per client whose jobs it reaches,
-- or uncounted on a job whose submitter is gone), and read the
-- submitter's room in the 55006, which pgjobs.client_room shows to the
-- client itself only. The raise undoes
-- the addition with the caller's statement. Locks: the submitter's row of
-- pgjobs.client_room_locks (FOR NO KEY UPDATE, to the end of the
-- transaction: a client's additions of bytes run one transaction after the
-- other) and the job row.
DECLARE
    v_caller name := pgjobs._caller();
    v_job pgjobs.jobs;
    v_submitter oid;
    v_max bigint := coalesce((pgjobs._defaults() ->> 'max_item_bytes_per_client')::bigint,
                             1073741824);
    v_total bigint;
BEGIN
    IF coalesce(p_add, 0) = 0 THEN
        RETURN;
    END IF;
    SELECT * INTO v_job FROM pgjobs.jobs j WHERE j.id = p_id;
    v_submitter := v_job.submitted_by_oid;
    IF NOT (pg_has_role(v_caller, 'pgjobs_admin', 'MEMBER')
            OR pgjobs._is_submitter(v_caller, v_job.submitted_by, v_submitter)) THEN
        -- Names no figure of anyone's room, nor the submitter (the caller
        -- sees it in pgjobs.jobs if anywhere).
        RAISE EXCEPTION 'job % was submitted by another role: only its submitter or an '
                        'administrator may add % to it (they count toward the submitter''s '
                        'max_item_bytes_per_client)', p_id, p_what
            USING ERRCODE = '42501',
            HINT = 'Submit them as a job of your own (they count toward your own room: '
                   'pgjobs.client_room()), or ask the job''s submitter or an administrator '
                   'to add them.';
    END IF;
    IF v_submitter IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        INSERT INTO pgjobs.client_room_locks AS l (submitter_oid, kept_bytes)
        VALUES (v_submitter, p_add)
        ON CONFLICT (submitter_oid) DO UPDATE SET kept_bytes = l.kept_bytes + EXCLUDED.kept_bytes
        RETURNING l.kept_bytes INTO v_total;
    EXCEPTION WHEN serialization_failure THEN
        -- REPEATABLE READ or SERIALIZABLE: another transaction changed the
        -- client's total since this one's snapshot; counting from it could
        -- pass the ceiling. Said plainly, not PostgreSQL's bare message.
        RAISE EXCEPTION 'the bytes role % keeps changed after this transaction began (% '
                        'bytes of % for job %): they cannot be counted from its snapshot',
                        coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r
                                   WHERE r.oid = v_submitter)::text, v_submitter::text),
                        p_add, p_what, p_id
            USING ERRCODE = '40001',
            HINT = 'Run the transaction again; under READ COMMITTED the call waits for the '
                   'other transaction instead.';
    END;
    IF v_total > v_max AND p_add > 0
       AND NOT pg_has_role(v_caller, 'pgjobs_admin', 'MEMBER') THEN
        -- What was counted (the bytes this call adds and of what), what the
        -- client keeps already, the room left and the setting, in one line.
        RAISE EXCEPTION 'role % would keep % bytes of inputs with this call (% bytes of % '
                        'added to %; it keeps % bytes now, % left): a client may keep at '
                        'most % bytes of items over all its jobs (max_item_bytes_per_client: '
                        'fan-out items, exclude lists, payloads past 4096 bytes a job, import '
                        'rejects, until its jobs are pruned), the most an administrator allows',
                        coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r
                                   WHERE r.oid = v_submitter)::text, v_submitter::text),
                        v_total, p_add, p_what,
                        CASE WHEN p_new THEN 'the job being submitted' ELSE 'job ' || p_id END,
                        v_total - p_add,
                        greatest(v_max - (v_total - p_add), 0), v_max
            USING ERRCODE = '55006',
            HINT = format('%s, let finished jobs be pruned (pgjobs.prune), or ask an '
                          'administrator to raise the ceiling with '
                          'pgjobs.set_defaults(''{"max_item_bytes_per_client": N}'') '
                          '(now %s).', p_hint, v_max);
    END IF;
    UPDATE pgjobs.jobs j SET kept_bytes = coalesce(j.kept_bytes, 0) + p_add WHERE j.id = p_id;
END
$$;

COMMENT ON FUNCTION pgjobs._keep_client_bytes(bigint, bigint, text, text, boolean) IS
'Adds bytes a job keeps to its submitter''s running total and raises 55006 when a client (not '
'an administrator) would keep more than max_item_bytes_per_client: the one count of that '
'ceiling (items, exclude lists, payloads past 4096 bytes, import rejects).';
