-- pgjobs 0001: schema, roles, the jobs table, the target registry and the
-- storage deletion queue. Migrations own state; behaviour lives in
-- sql/functions and is re-applied on every `pgjobs migrate`.

CREATE SCHEMA IF NOT EXISTS pgjobs;

-- Roles are cluster-wide: another database of the same cluster may have
-- created them already, possibly at the same moment.
DO $roles$
BEGIN
    BEGIN
        CREATE ROLE pgjobs_client NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE pgjobs_admin NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
END
$roles$;

-- An admin can do everything a client can.
GRANT pgjobs_client TO pgjobs_admin;

CREATE TABLE pgjobs.jobs (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                 text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,62}$'),
    target               regclass    NOT NULL,
    scope                text        NOT NULL,
    status               text        NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    priority             integer     NOT NULL DEFAULT 0,
    payload              jsonb       NOT NULL DEFAULT '{}',
    options              jsonb       NOT NULL DEFAULT '{}',
    done                 bigint      NOT NULL DEFAULT 0,
    total                bigint,
    attempts             integer     NOT NULL DEFAULT 0,
    max_attempts         integer     NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    error                text,
    result               jsonb,
    -- Rows created after this instant are never touched by the job.
    cutoff               timestamptz NOT NULL DEFAULT now(),
    run_at               timestamptz NOT NULL DEFAULT now(),
    -- The lease: who owns the current attempt and until when.
    worker               text,
    lease                interval    NOT NULL DEFAULT '30 seconds',
    lease_expires_at     timestamptz,
    heartbeat_at         timestamptz,
    cancel_requested_at  timestamptz,
    -- Where the work stands; committed with the page it describes.
    checkpoint           jsonb,
    -- The compiled row predicate of delete/backfill jobs (scope, cutoff,
    -- filter, exclusions), fixed at submit so the mask and the runner agree.
    predicate            text,
    -- The compiled SET list of backfill jobs, fixed at submit likewise.
    assignments          text,
    progress_notified_at timestamptz,
    submitted_by         name        NOT NULL DEFAULT session_user,
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    finished_at          timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    -- worker keeps the last owner after the job stops running, for diagnosis.
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL)),
    CHECK (status <> 'running' OR worker IS NOT NULL),
    CHECK ((status IN ('succeeded', 'failed', 'canceled')) = (finished_at IS NOT NULL))
);

COMMENT ON TABLE pgjobs.jobs IS 'One row per pgjobs job. Written only through pgjobs functions.';

-- claim: the queued jobs in the order they are handed out.
CREATE INDEX jobs_queued_idx ON pgjobs.jobs (priority DESC, id)
    WHERE status = 'queued';

-- The gate: at most one writing job per (target, scope) runs at a time.
CREATE UNIQUE INDEX jobs_one_writer_idx ON pgjobs.jobs (target, scope)
    WHERE status = 'running' AND kind IN ('delete', 'backfill', 'import');

-- Pending writers per (target, scope): the gate's queue and the read mask.
CREATE INDEX jobs_pending_writers_idx ON pgjobs.jobs (target, scope, id)
    WHERE status IN ('queued', 'running') AND kind IN ('delete', 'backfill', 'import');

-- Lease rescue.
CREATE INDEX jobs_leases_idx ON pgjobs.jobs (lease_expires_at)
    WHERE status = 'running';

-- prune: finished jobs by age.
CREATE INDEX jobs_finished_idx ON pgjobs.jobs (finished_at)
    WHERE finished_at IS NOT NULL;

-- The job table churns: vacuum it eagerly so claims stay index-only fast.
ALTER TABLE pgjobs.jobs SET (autovacuum_vacuum_scale_factor = 0.01,
                             autovacuum_vacuum_threshold = 200,
                             fillfactor = 80);

CREATE TABLE pgjobs.target_registry (
    target            regclass    PRIMARY KEY,
    key_column        name        NOT NULL,
    scope_column      name        NOT NULL,
    created_at_column name        NOT NULL,
    document_column   name,
    key_type          regtype     NOT NULL,
    scope_type        regtype     NOT NULL,
    options           jsonb       NOT NULL DEFAULT '{}',
    registered_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE pgjobs.target_registry IS
    'Tables registered with pgjobs.register_target(). Read it through the pgjobs.targets view.';

-- Objects of pruned export jobs, waiting for a worker to delete them from
-- storage.
CREATE TABLE pgjobs.storage_deletions (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uri       text        NOT NULL,
    job_id    bigint      NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now(),
    attempts  integer     NOT NULL DEFAULT 0,
    last_error text
);

CREATE VIEW pgjobs.targets AS
SELECT r.target,
       r.key_column       AS key,
       r.scope_column     AS scope,
       r.created_at_column AS created_at,
       r.document_column  AS document,
       r.key_type,
       r.scope_type,
       r.options,
       c.reltuples::bigint AS estimated_rows,
       r.registered_at,
       r.updated_at
  FROM pgjobs.target_registry r
  LEFT JOIN pg_catalog.pg_class c ON c.oid = r.target;
