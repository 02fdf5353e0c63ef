-- pgjobs 0036: a job remembers the columns of its target as they were when
-- it was compiled. A job's predicate, SET list, export column list and
-- import mapping name columns; a column renamed (and another given its old
-- name), dropped and added again, or given another type while the job was
-- pending made its pages, chunks and batches act on other columns than the
-- submitter's (a delete of tenant 1 deleted by another column's value).
-- target_columns holds each column's number, name, type, type modifier and
-- collation at submit (pgjobs._target_columns); the runner's pages, an
-- export's chunks and an import's batches compare them with the table's
-- before they touch it, under a lock that keeps them so to their commit, and
-- a job whose columns changed fails for good (pgjobs._columns_changed). Jobs
-- submitted before this migration have NULL here and run as before. Catalog
-- only: a nullable column without a default rewrites nothing.
-- depends: 0035.storage_allow_comment

ALTER TABLE pgjobs.jobs ADD COLUMN target_columns jsonb;

COMMENT ON COLUMN pgjobs.jobs.target_columns IS
    'The target''s columns when the job was submitted (number, name, type, type modifier, '
    'collation; NULL for jobs submitted before migration 0036 and for unregistered targets): '
    'a job whose columns were renamed, dropped or retyped since fails for good.';
