CREATE OR REPLACE FUNCTION pgjobs._collect_matches(p_job pgjobs.jobs)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
SET extra_float_digits = 3
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
-- The first call of a 'collect' delete job (pgjobs._page_strategy): finds
-- the rows that match the job's predicate now, through the target's indexes
-- (bitmap scans only: a GIN lookup, then the matching rows in heap order),
-- and stores their addresses in pgjobs.job_batches, 1000 per batch, in the
-- caller's transaction (so with the job's first checkpoint). Batch 0 holds
-- the last 1000 addresses in heap order, batch 1 the 1000 before them, and
-- so on (each in heap order; the last batch is the short one), so pages,
-- which take batches in their order, delete from the end of the heap back,
-- a batch of 1000 addresses at a time.
-- The job reads the matching rows' heap pages three times (here, the
-- pages, the sweep), and they need not fit in shared buffers: here they
-- are read in heap order, which leaves the last of them cached for the
-- first pages; the pages end at the start of the heap, where the sweep
-- (in heap order too) begins. In heap order all three times, every pass
-- read every page from the OS again: on bench/delete.py (1M-row scope,
-- 20% on each of its 29,000 pages, shared_buffers 128MB) the pages and
-- the sweep read 15,800 and 16,100 of them instead of 29,400 and 29,700.
-- Every page re-checks the predicate on the row it finds at an address,
-- and the job ends with a sweep of what still matches (pgjobs._run_page),
-- so a stale address (the row was updated, moved or deleted since) never
-- deletes a row the job does not cover, nor lets one survive.
-- Returns how many rows it collected. Locks nothing in the target.
-- Trust: its only caller, pgjobs._run_page, has just checked the target
-- and the submitter in full (the first call of every attempt always
-- does), in this transaction; a second check here cost another 2-10 ms.
DECLARE
    v_seqscan text := current_setting('enable_seqscan');
    v_indexscan text := current_setting('enable_indexscan');
    v_bitmapscan text := current_setting('enable_bitmapscan');
    v_count bigint;
BEGIN
    DELETE FROM pgjobs.job_batches b WHERE b.job_id = p_job.id;
    PERFORM set_config('enable_seqscan', 'off', true);
    PERFORM set_config('enable_indexscan', 'off', true);
    PERFORM set_config('enable_bitmapscan', 'on', true);
    EXECUTE format($q$
        WITH m AS (SELECT array_agg(t.ctid) AS tids FROM %1$s t WHERE %2$s),
             b AS (INSERT INTO pgjobs.job_batches (job_id, batch, tids)
                   SELECT %3$s, n, m.tids[cardinality(m.tids) - n * 1000 - 999
                                          : cardinality(m.tids) - n * 1000]
                     FROM m, generate_series(0, (cardinality(m.tids) - 1) / 1000) n)
        SELECT coalesce(cardinality(m.tids), 0) FROM m$q$,
        p_job.target, p_job.predicate, p_job.id)
       INTO v_count;
    PERFORM set_config('enable_seqscan', v_seqscan, true);
    PERFORM set_config('enable_indexscan', v_indexscan, true);
    PERFORM set_config('enable_bitmapscan', v_bitmapscan, true);
    RETURN v_count;
END
$$;
