-- pgjobs 0013: import jobs. The records an import rejected (max_rejects > 0)
-- are kept here, written in the same transaction as the batch they belong
-- to (so a batch redone after a crash neither loses nor repeats them), and
-- copied to the rejects object when the import ends. They go with their
-- job (pgjobs.prune deletes finished jobs).
-- depends: 0008.scope_identity

CREATE TABLE IF NOT EXISTS pgjobs.import_rejects (
    job_id  bigint NOT NULL REFERENCES pgjobs.jobs (id) ON DELETE CASCADE,
    line    bigint NOT NULL,
    reason  text   NOT NULL,
    record  text,
    PRIMARY KEY (job_id, line)
);

COMMENT ON TABLE pgjobs.import_rejects IS
'Records an import job rejected (line number in the source, reason, the record as read).';
