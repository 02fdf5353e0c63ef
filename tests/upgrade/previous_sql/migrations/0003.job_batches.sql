-- pgjobs 0003: the row addresses a selective delete job collects when it
-- starts (docs/engine.md, "Selective filters"). The first call of such a
-- job finds the matching rows once through the target's indexes and stores
-- their addresses (ctid) here, in batches of 1000; each page then deletes
-- the rows at the next addresses (re-checking the job's predicate), so no
-- page reads the rows of the scope that the filter spares. Written in the
-- same transaction as the job's checkpoint; removed when the job succeeds
-- or is canceled or fails for good in the runner, and with the job row by
-- pgjobs.prune (ON DELETE CASCADE).
-- depends: 0001.initial

CREATE TABLE pgjobs.job_batches (
    job_id bigint  NOT NULL REFERENCES pgjobs.jobs (id) ON DELETE CASCADE,
    -- Batch n holds the addresses at positions n * 1000 + 1 .. n * 1000 + 1000.
    batch  integer NOT NULL CHECK (batch >= 0),
    tids   tid[]   NOT NULL,
    PRIMARY KEY (job_id, batch)
);

-- Kept inline and uncompressed (6 KB a batch): a page reads its slices
-- without detoasting them, twice as fast.
ALTER TABLE pgjobs.job_batches ALTER COLUMN tids SET STORAGE PLAIN;

COMMENT ON TABLE pgjobs.job_batches IS
    'Addresses (ctid) of the rows a running selective delete job collected at its start, '
    '1000 per batch. Written and read only by the runner (pgjobs._run_page).';
