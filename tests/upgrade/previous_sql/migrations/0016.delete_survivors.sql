-- pgjobs 0016: what a delete can leave of its scope, stored as data.
-- The read path's short cut past a whole-scope delete
-- (pgjobs._mask_candidates) needs three facts the submit knows: that the
-- delete has no filter, its horizon (rows dated before it are the job's),
-- and the keys it excludes. They were recovered by parsing the SQL text of
-- jobs.predicate, which ties the read path to the exact text
-- pgjobs._row_predicate and pgjobs._cutoff_clause write. A delete now
-- stores them at submit in jobs.survivors; the parse stays only for jobs
-- submitted before this migration (survivors IS NULL).
-- pgjobs._cutoff_clause now also returns the horizon it chose, so its
-- result type changes: the old signature is dropped here and the new one
-- is created by sql/functions on the same migrate.
-- depends: 0018.writing_kind

ALTER TABLE pgjobs.jobs ADD COLUMN survivors jsonb;
COMMENT ON COLUMN pgjobs.jobs.survivors IS
    'For a delete submitted by this release or later: what of its scope it can leave, '
    '{"whole_scope", "created_at_column", "horizon", "created_at_type", "time_zone", '
    '"key_column", "key_type", "exclude"}: '
    'with no filter (whole_scope), every row of the scope dated before horizon and not '
    'excluded is the job''s. NULL for other kinds and for deletes submitted before.';

DROP FUNCTION IF EXISTS pgjobs._cutoff_clause(pgjobs.target_registry, timestamptz);
