-- pgjobs 0045: the jobs of a submitter, by target. Policy jobs_client_read
-- shows a client its own jobs on a table it may no longer read, and its
-- tenancy keys (pgjobs._allowed_scope_keys_as) must cover them; they cover
-- no other table the client may not read, which would tell it that pgjobs
-- knows that table. Whether the caller has a job on such a registered
-- target is one probe of this index per target (without it, one pass over
-- the whole jobs table per target, in every statement of a session with
-- pgjobs.allowed_scopes set). Neither column changes after the insert, so
-- job updates stay HOT.
-- depends: 0043.rejects_created

CREATE INDEX jobs_submitter_idx ON pgjobs.jobs (submitted_by, target);
