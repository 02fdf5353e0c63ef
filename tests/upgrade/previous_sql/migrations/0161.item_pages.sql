-- pgjobs 0161: a fan-out job's items read a page at a time in id order
-- (`pgjobs items JOB [--status S] [--after ID]`), for jobs of millions of
-- items. job_items_job_idx was (job_id, status): a job's items of one
-- status came out in heap order, so a page in id order sorted every item
-- of the job (or of that status) first. The index now ends with id: a page
-- of one status is a range of it, a page of any status one range per
-- status (five, merged: the status CHECK of 0025), each read no further
-- than the page, and every reader of the old index (the result's counts,
-- cancel, retry, the cascade of pgjobs.prune) reads it as before (its
-- leading columns are the old ones). Built beside the old one, which is
-- then dropped, and renamed to the old name, so the functions' notes and
-- plans keep naming it. No data changes; jobs in flight run as they are
-- (the build holds writes to pgjobs.job_items, not reads, while it reads
-- the table once). The price: the old keys repeated and were stored
-- deduplicated, the new ones are each their own entry, so adding items
-- costs more (1.2x to 1.3x for a submit_items; claims and completions no
-- measurable more: bench/item_pages.py).
-- depends: 0146.client_kept_bytes

CREATE INDEX job_items_job_page_idx ON pgjobs.job_items (job_id, status, id);
DROP INDEX pgjobs.job_items_job_idx;
ALTER INDEX pgjobs.job_items_job_page_idx RENAME TO job_items_job_idx;
