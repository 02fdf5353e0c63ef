-- pgjobs 0014: one export, many workers (option "parallel"). An export
-- submitted with parallel: N > 1 is split, when first claimed, into up to N
-- parts: consecutive key ranges of its scope, sized evenly by the (scope,
-- key) index. Each part is its own resumable unit: claimed with a lease,
-- fenced on the claim's identity (name#token), checkpointed (cursor, upload
-- state, part digests), retried alone when it fails. The job row stays the
-- unit a user sees: its `done` is the sum of its parts', its cancel and pause
-- stop every part, and the worker holding the job joins the parts' objects
-- into the export's object once every part has succeeded.
-- The parts go with their job (pgjobs.prune deletes finished jobs).
-- depends: 0018.writing_kind

CREATE TABLE IF NOT EXISTS pgjobs.export_parts (
    job_id            bigint      NOT NULL REFERENCES pgjobs.jobs (id) ON DELETE CASCADE,
    part              integer     NOT NULL CHECK (part >= 1),
    after_key         text,       -- keys above this one (NULL: from the scope's first key)
    until_key         text,       -- up to and including this one (NULL: to the scope's last)
    status            text        NOT NULL DEFAULT 'queued'
                                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts          integer     NOT NULL DEFAULT 0,
    worker            text,
    lease_expires_at  timestamptz,
    done              bigint      NOT NULL DEFAULT 0,
    checkpoint        jsonb,
    result            jsonb,
    error             text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, part),
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL))
);

COMMENT ON TABLE pgjobs.export_parts IS
'The parts of an export submitted with parallel > 1: a key range (after_key, until_key] of the '
'scope each, claimed, leased, fenced and checkpointed on its own.';

-- export_chunk_sql takes the part's upper bound now (p_until).
DROP FUNCTION IF EXISTS pgjobs.export_chunk_sql(bigint, text, integer);
