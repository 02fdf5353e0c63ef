-- pgjobs 0038: the imports of a (target, scope), by id, whatever their status.
-- A delete or backfill is neither retried nor started for the first time
-- while an import of its scope placed after its submit has written rows
-- (pgjobs._import_after, asked by pgjobs._retry_as and, once per job, by
-- pgjobs._may_start_attempt in every claim path): that look reads finished
-- imports too, which no other index of pgjobs.jobs holds by scope, so it
-- read the whole jobs table (the pruned history included) at every first
-- claim of a delete or backfill. Imports only: a few rows, and no write of
-- a job's status or progress changes its key (target, scope and id never
-- change), so job updates stay HOT.
-- depends: 0037.scope_locks

CREATE INDEX jobs_imports_idx ON pgjobs.jobs (target, scope, id) WHERE kind = 'import';
