-- pgjobs 0025: fan-out jobs (issue 16). One job, many items: the parent is
-- a row of pgjobs.jobs (fanout = true) that people watch, cancel, pause and
-- retry; its items are rows of pgjobs.job_items, claimed one by one (or in
-- batches) by external workers of any language through pgjobs.claim_items,
-- leased and fenced on the claim's identity (name#token) exactly like jobs,
-- retried with backoff up to the parent's max_attempts, rescued when their
-- lease expires. The parent's total is its item count and done its finished
-- items (succeeded or failed for good). pgjobs.claim never hands out a
-- fan-out parent: only its items are work.
--
-- Lock order, everywhere: the parent job row first, then its items (claims
-- take items with SKIP LOCKED and never wait for a parent they do not
-- already hold), so cancel, retry, add_items, completions and the rescue
-- never deadlock.
-- The items go with their job (pgjobs.prune deletes finished jobs).
-- depends: 0022.stats

ALTER TABLE pgjobs.jobs ADD COLUMN fanout boolean NOT NULL DEFAULT false;

CREATE TABLE pgjobs.job_items (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id            bigint      NOT NULL REFERENCES pgjobs.jobs (id) ON DELETE CASCADE,
    payload           jsonb       NOT NULL,
    status            text        NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    attempts          integer     NOT NULL DEFAULT 0,
    -- The claim's identity (name#token) of the current or last attempt.
    worker            text,
    lease             interval,
    lease_expires_at  timestamptz,
    run_at            timestamptz NOT NULL DEFAULT now(),
    result            jsonb,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL)),
    CHECK (status <> 'running' OR worker IS NOT NULL),
    CHECK ((status IN ('succeeded', 'failed', 'canceled')) = (finished_at IS NOT NULL))
);

COMMENT ON TABLE pgjobs.job_items IS
'The items of fan-out jobs (pgjobs.submit_items): one payload each, claimed, leased, fenced, '
'retried and rescued on its own. Written only through pgjobs functions.';

-- claim_items: a job's queued items in the order they are handed out (due
-- first: array order, a retry after its backoff behind the items due
-- before it). An order the primary key cannot give, so the pick never walks
-- the key over the items already claimed.
CREATE INDEX job_items_queued_idx ON pgjobs.job_items (job_id, run_at, id)
    WHERE status = 'queued';
-- The concurrency cap and the end of a job: its items out now.
CREATE INDEX job_items_running_idx ON pgjobs.job_items (job_id) WHERE status = 'running';
-- Lease rescue.
CREATE INDEX job_items_leases_idx ON pgjobs.job_items (lease_expires_at)
    WHERE status = 'running';
-- A job's items by status: the result's counts, cancel, retry, the cascade.
CREATE INDEX job_items_job_idx ON pgjobs.job_items (job_id, status);

ALTER TABLE pgjobs.job_items SET (autovacuum_vacuum_scale_factor = 0.01,
                                  autovacuum_vacuum_threshold = 1000,
                                  fillfactor = 80);

-- Read access mirrors the parent's: a role sees an item exactly when it may
-- see its job (the subquery runs under pgjobs.jobs's own policies).
ALTER TABLE pgjobs.job_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE pgjobs.job_items FORCE ROW LEVEL SECURITY;

CREATE POLICY job_items_admin ON pgjobs.job_items AS PERMISSIVE FOR ALL TO pgjobs_admin
    USING (true) WITH CHECK (true);

CREATE POLICY job_items_owner ON pgjobs.job_items AS PERMISSIVE FOR ALL TO PUBLIC
    USING ((SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
              FROM pg_catalog.pg_class c WHERE c.oid = 'pgjobs.job_items'::pg_catalog.regclass))
    WITH CHECK ((SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE')
                   FROM pg_catalog.pg_class c
                  WHERE c.oid = 'pgjobs.job_items'::pg_catalog.regclass));

CREATE POLICY job_items_client_read ON pgjobs.job_items AS PERMISSIVE FOR SELECT
    TO pgjobs_client
    USING (EXISTS (SELECT FROM pgjobs.jobs j WHERE j.id = job_items.job_id));

COMMENT ON POLICY job_items_client_read ON pgjobs.job_items IS
    'A pgjobs_client sees the items of the jobs it may see in pgjobs.jobs.';
