CREATE OR REPLACE FUNCTION pgjobs._require_client_item_room(p_id bigint, p_job_bytes bigint,
                                                            p_add_bytes bigint, p_hint text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The one check of set_defaults' max_item_bytes_per_client (else
-- 1073741824, 1 GiB): 55006 when the submitter of job p_id, which has
-- p_job_bytes of inputs kept beside it and is given p_add_bytes more, would
-- keep more than that over all its jobs (their item_bytes, every status,
-- until pgjobs.prune; pgjobs._client_item_bytes). Every input a client
-- keeps beside its jobs without another bound passes here before it is
-- written: a fan-out job's items (pgjobs._items_add) and a delete's exclude
-- list kept in pgjobs.job_exclusions (pgjobs._submit_delete_as: up to
-- 100,000 keys of any length a job). The caller has checked it is not an
-- administrator, holds the job row, and stores p_job_bytes + p_add_bytes
-- in the job's item_bytes after. p_hint opens the error's hint (what to do
-- instead). Counted without a lock, and near the ceiling (within a tenth of
-- it, pgjobs._near_ceiling, or of ten calls of this size: a call may add
-- 64 MiB of items, and the count misses what the client's other sessions
-- added far from it and have not committed) again under the submitter's
-- room lock (pgjobs._lock_client_room 'near', its own calls only).
-- Locks: the submitter's row of pgjobs.client_room_locks, near the ceiling.
DECLARE
    v_submitter oid;
    v_max bigint := coalesce((pgjobs._defaults() ->> 'max_item_bytes_per_client')::bigint,
                             1073741824);
    v_bytes bigint;
BEGIN
    SELECT j.submitted_by_oid INTO v_submitter FROM pgjobs.jobs j WHERE j.id = p_id;
    v_bytes := pgjobs._client_item_bytes(v_submitter, p_id) + p_job_bytes + p_add_bytes;
    IF v_submitter IS NOT NULL
       AND (pgjobs._near_ceiling(v_bytes, v_max) OR v_bytes >= v_max - 10 * p_add_bytes) THEN
        PERFORM pgjobs._lock_client_room(
            v_submitter, 'near',
            v_submitter = (SELECT r.oid FROM pg_catalog.pg_roles r
                            WHERE r.rolname = pgjobs._caller()));
        v_bytes := pgjobs._client_item_bytes(v_submitter, p_id) + p_job_bytes
                   + p_add_bytes;  -- again, under the lock
    END IF;
    IF v_bytes > v_max THEN
        RAISE EXCEPTION 'role % would keep % bytes of fan-out items and exclude lists with '
                        'this call (% added to job %): a client may keep at most % bytes of '
                        'items over all its jobs, the most an administrator allows',
                        coalesce((SELECT r.rolname FROM pg_catalog.pg_roles r
                                   WHERE r.oid = v_submitter)::text, v_submitter::text),
                        v_bytes, p_add_bytes, p_id, v_max
            USING ERRCODE = '55006',
            HINT = format('%s, let finished jobs be pruned (pgjobs.prune), or ask an '
                          'administrator to raise the ceiling with '
                          'pgjobs.set_defaults(''{"max_item_bytes_per_client": N}'') '
                          '(now %s).', p_hint, v_max);
    END IF;
END
$$;

COMMENT ON FUNCTION pgjobs._require_client_item_room(bigint, bigint, bigint, text) IS
'55006 when the submitter of a job would keep more than max_item_bytes_per_client bytes of '
'fan-out items and delete exclude lists over all its jobs: the one check of that ceiling '
'(pgjobs._items_add, pgjobs._submit_delete_as).';
