DROP FUNCTION IF EXISTS pgjobs._items_add(bigint, jsonb);

CREATE OR REPLACE FUNCTION pgjobs._items_add(p_id bigint, p_items jsonb,
                                            p_new boolean DEFAULT false)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- Inserts one queued item of fan-out job p_id per element of the JSON
-- array p_items, in array order (item ids ascend with it: the claim
-- order), and adds their number to the job's total. The caller has checked
-- the job and the array and holds the job row. Raises 22023 for an
-- element over 1 MiB, and 55006 when a caller who is not an administrator
-- (pgjobs._caller not a pgjobs_admin member nor a superuser) would bring
-- the job past set_defaults' max_items_per_job items (else 100000):
-- pgjobs.submit_items and pgjobs.add_items both pass here, so neither one
-- call nor many calls grow a job without end (each item a row of
-- pgjobs.job_items that every claim of the kind may walk), and 55006 when
-- such a caller would bring the job's items past set_defaults'
-- max_item_bytes_per_job bytes (else 67108864, 64 MiB), counted as the
-- JSON text of the arrays given (octet_length(p_items::text), kept in the
-- job's item_bytes; a job from before migration 0054 has its items counted
-- once here): 1 MiB items times max_items_per_job would be 100 GB a job.
-- And 55006 when the job's submitter would hold more than set_defaults'
-- max_item_bytes_per_client bytes (else 1073741824, 1 GiB) of items over
-- all its kept jobs with every other input it keeps (a running total,
-- pgjobs._keep_client_bytes, which every such input passes): a client's
-- max_jobs_kept_per_client jobs of 64 MiB each would be TBs of job_items,
-- one tenant filling the database's disk.
-- Nothing is added when any of them is raised. Returns the number added.
-- p_new: job p_id is the one this call submits (pgjobs.submit_items), rolled
-- back with a refusal, so the errors name it "the job being submitted",
-- not by an id that will never exist; pgjobs.add_items names the job's id.
-- Locks: the job row (already the caller's, so two calls adding to one job
-- count one after the other).
DECLARE
    v_count integer;
    v_index bigint;
    v_size integer;
    v_max bigint;
    v_total bigint;
    v_bytes bigint;
    v_add_bytes bigint := octet_length(p_items::text);
    v_admin boolean := pg_has_role(pgjobs._caller(), 'pgjobs_admin', 'MEMBER');
    v_job text := CASE WHEN p_new THEN 'the job being submitted' ELSE 'job ' || p_id END;
BEGIN
    IF NOT v_admin THEN
        v_max := coalesce((pgjobs._defaults() ->> 'max_items_per_job')::bigint, 100000);
        SELECT coalesce(j.total, 0) INTO v_total FROM pgjobs.jobs j WHERE j.id = p_id;
        IF v_total + jsonb_array_length(p_items) > v_max THEN
            RAISE EXCEPTION '% has % items and this call adds %: a fan-out job may have '
                            'at most % items, the most an administrator allows a client',
                            v_job, v_total, jsonb_array_length(p_items), v_max
                USING ERRCODE = '55006',
                HINT = format('Split the work into several jobs of at most %s items '
                              '(pgjobs.submit_items), or ask an administrator to raise the '
                              'ceiling with pgjobs.set_defaults(''{"max_items_per_job": N}'').',
                              v_max);
        END IF;
    END IF;
    -- Every payload's limit (pgjobs._insert_job's), per item: the array as
    -- a whole may be larger. Its text is measured once; the elements only
    -- when it is over the limit.
    IF v_add_bytes > 1048576 THEN
        SELECT e.n, octet_length(e.value::text) INTO v_index, v_size
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(value, n)
         WHERE octet_length(e.value::text) > 1048576
         ORDER BY e.n
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'item % of the array is % bytes; the limit is 1 MiB per item',
                v_index, v_size
                USING ERRCODE = '22023',
                      HINT = 'Keep large inputs in a table or object storage and pass a '
                             'reference in the item.';
        END IF;
    END IF;
    -- The bytes the job was given so far: kept on the job row (held by the
    -- caller), counted from its items once for a job made before 0054.
    SELECT j.item_bytes INTO v_bytes FROM pgjobs.jobs j WHERE j.id = p_id;
    IF v_bytes IS NULL THEN
        SELECT coalesce(sum(octet_length(i.payload::text)), 0) INTO v_bytes
          FROM pgjobs.job_items i WHERE i.job_id = p_id;
    END IF;
    IF NOT v_admin THEN
        v_max := coalesce((pgjobs._defaults() ->> 'max_item_bytes_per_job')::bigint, 67108864);
        IF v_bytes + v_add_bytes > v_max THEN
            RAISE EXCEPTION '% has % bytes of items and this call adds %: a fan-out job''s '
                            'items may have at most % bytes, the most an administrator allows '
                            'a client', v_job, v_bytes, v_add_bytes, v_max
                USING ERRCODE = '55006',
                HINT = format('Keep large inputs in a table or object storage and pass a '
                              'reference in each item, split the work into several jobs of '
                              'at most %s bytes of items, or ask an administrator to raise '
                              'the ceiling with '
                              'pgjobs.set_defaults(''{"max_item_bytes_per_job": N}'').',
                              v_max);
        END IF;
    END IF;
    -- Counted for the job's submitter, who alone adds them but for an
    -- administrator (whose call is not refused): pgjobs._keep_client_bytes,
    -- 42501 for another client.
    PERFORM pgjobs._keep_client_bytes(
        p_id, v_add_bytes, 'fan-out items',
        'Keep large inputs in a table or object storage and pass a reference in each item',
        p_new);
    INSERT INTO pgjobs.job_items (job_id, payload)
    SELECT p_id, e.value
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(value, n)
     ORDER BY e.n;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    UPDATE pgjobs.jobs SET total = coalesce(total, 0) + v_count,
                           item_bytes = v_bytes + v_add_bytes, updated_at = now()
     WHERE id = p_id;
    RETURN v_count;
END
$$;
