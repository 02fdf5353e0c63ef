"""Every SQL statement the Python side sends, as named constants.

Python only calls pgjobs' SQL functions; job logic lives in the database.
Sections are per area; keep each statement next to its siblings.
"""

from __future__ import annotations

# --- migrate --------------------------------------------------------------

# The session lock that serializes `pgjobs migrate` runs. Any role may take
# an advisory key, and hold it outside any transaction (no idle timeout ends
# it): a migrate waited for such a session forever, printing nothing. It
# waits at most the session's lock_timeout, or 60 s (a whole first install
# of another migrate takes a few seconds), then raises 55P03 naming the
# sessions that hold the key. A DO block, not pgjobs._advisory_xact_lock:
# before the first install there is no pgjobs function to call (the query
# is pgjobs._lock_holders' advisory case).
MIGRATE_LOCK = """
DO $lock$
DECLARE
    v_key bigint := pg_catalog.hashtext('pgjobs.migrate');
    v_timeout text := pg_catalog.current_setting('lock_timeout');
    v_wait text := CASE WHEN v_timeout IN ('0', '0ms', '0s') THEN '60s' ELSE v_timeout END;
    v_holders text;
BEGIN
    PERFORM pg_catalog.set_config('lock_timeout', v_wait, true);
    PERFORM pg_catalog.pg_advisory_lock(v_key);
EXCEPTION WHEN lock_not_available THEN
    PERFORM pg_catalog.pg_stat_clear_snapshot();
    SELECT pg_catalog.string_agg(pg_catalog.format(
               'pid %%s (role %%s, application %%s, %%s)', l.pid,
               coalesce(a.usename::text, '?'),
               coalesce(pg_catalog.quote_ident(nullif(a.application_name, '')), 'none'),
               coalesce(a.state, 'state unknown')), ', ' ORDER BY l.pid)
      INTO v_holders
      FROM pg_catalog.pg_locks l
      LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
     WHERE l.granted AND l.locktype OPERATOR(pg_catalog.=) 'advisory'
       AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
       AND l.objsubid OPERATOR(pg_catalog.=) 1
       AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
           WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
       AND ((l.classid::bigint OPERATOR(pg_catalog.<<) 32)
            OPERATOR(pg_catalog.|) l.objid::bigint) OPERATOR(pg_catalog.=) v_key;
    RAISE EXCEPTION 'waited %% for the lock that serializes pgjobs migrate runs: %%', v_wait,
                    coalesce(v_holders OPERATOR(pg_catalog.||) ' holds it',
                             'the session that held it let go just now')
        USING ERRCODE = '55P03',
              HINT = CASE WHEN v_holders IS NULL THEN 'Run pgjobs migrate again.'
                     ELSE pg_catalog.format(
                         'Run pgjobs migrate again once that session is done (another pgjobs '
                         'migrate takes seconds); any session may take the key '
                         '(pg_advisory_lock(%%s)): if it stays, end that session '
                         '(SELECT pg_terminate_backend(pid)).', v_key) END;
END
$lock$"""
MIGRATE_UNLOCK = "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('pgjobs.migrate'))"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS pgjobs"
# The objects of schema pgjobs (the schema itself, its tables, views,
# sequences, routines and types, not an extension's members) owned by a role
# whose rights %(role)s (NULL: the session's role) lacks (pg_has_role USAGE:
# an inheriting member, or a superuser, has them): `pgjobs migrate` replaces
# every routine and grants on
# every table, which only an owner may, so one such object failed it with a
# raw 42501 halfway (pgjobs.migrate.check_ownership asks first, as the
# migrating role); `pgjobs doctor`'s engine.ownership asks it of the schema's
# owner (pgjobs._doctor_ownership, the same catalog reads). With each, the
# statement that gives it to that role. Catalog reads only.
FOREIGN_OWNED = """
SELECT b.role, o.kind, o.name, o.owner::pg_catalog.regrole::text AS owner,
       pg_catalog.format('ALTER %%s %%s OWNER TO %%I', o.kind, o.name, b.role) AS fix
  FROM (SELECT coalesce(%(role)s::text, CURRENT_USER::text) AS role) b,
       (SELECT 0 AS rank, 'SCHEMA' AS kind, pg_catalog.quote_ident(n.nspname) AS name,
               n.nspowner AS owner, 'pg_catalog.pg_namespace'::pg_catalog.regclass AS class,
               n.oid
          FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'pgjobs'
        UNION ALL
        SELECT 1, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                 WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                 WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END,
               c.oid::pg_catalog.regclass::text, c.relowner,
               'pg_catalog.pg_class'::pg_catalog.regclass, c.oid
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname OPERATOR(pg_catalog.=) 'pgjobs'
           AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,S,f,c}'::pg_catalog."char"[])
        UNION ALL
        SELECT 2, CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE'
                                 ELSE 'FUNCTION' END,
               p.oid::pg_catalog.regprocedure::text, p.proowner,
               'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid
          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname OPERATOR(pg_catalog.=) 'pgjobs'
        UNION ALL
        SELECT 3, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
               t.oid::pg_catalog.regtype::text, t.typowner,
               'pg_catalog.pg_type'::pg_catalog.regclass, t.oid
          FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname OPERATOR(pg_catalog.=) 'pgjobs'
           AND t.typtype OPERATOR(pg_catalog.=) ANY ('{b,d,e,r}'::pg_catalog."char"[])
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_type a
                            WHERE a.typarray OPERATOR(pg_catalog.=) t.oid)) o
 WHERE NOT pg_catalog.pg_has_role(b.role::pg_catalog.name, o.owner, 'USAGE')
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.classid OPERATOR(pg_catalog.=) o.class
                      AND d.objid OPERATOR(pg_catalog.=) o.oid
                      AND d.deptype OPERATOR(pg_catalog.=) 'e')
 ORDER BY o.rank, o.name
"""
# The installed routines a function file's statement could not apply to
# (pgjobs.migrate.REFUSALS) and, for each, what to drop it with and what to
# give back once the file created it again: its owner and comment (CREATE OR
# REPLACE keeps them) and its grants, PUBLIC revoked first (a new routine has
# PUBLIC's EXECUTE). zz_grants.sql then sets the version's grants. `aside` is
# the probe's rename (pgjobs.migrate._created_as_another_kind). Only routines
# of schema pgjobs that the file is named after (%(name)s) or names
# (`pgjobs.f(` in its text, %(file)s) are taken.
FILE_ROUTINES = """
SELECT p.oid::pg_catalog.int8 AS oid, p.proname::pg_catalog.text AS name,
       p.oid::pg_catalog.regprocedure::pg_catalog.text AS routine,
       pg_catalog.format('DROP ROUTINE %%s RESTRICT', p.oid::pg_catalog.regprocedure) AS drop,
       pg_catalog.format('ALTER ROUTINE %%s RENAME TO %%I', p.oid::pg_catalog.regprocedure,
                         'pgjobs_probe_' OPERATOR(pg_catalog.||) p.oid::pg_catalog.text) AS aside,
       pg_catalog.format('REVOKE ALL ON ROUTINE %%s FROM PUBLIC',
                         p.oid::pg_catalog.regprocedure) AS revoke,
       CASE WHEN p.proowner OPERATOR(pg_catalog.<>) (
                     SELECT r.oid FROM pg_catalog.pg_roles r
                      WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
            THEN pg_catalog.format('ALTER ROUTINE %%s OWNER TO %%s', p.oid::pg_catalog.regprocedure,
                                   p.proowner::pg_catalog.regrole) END AS owner,
       ARRAY(SELECT pg_catalog.format('GRANT %%s ON ROUTINE %%s TO %%s%%s', a.privilege_type,
                                      p.oid::pg_catalog.regprocedure,
                                      CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                           ELSE a.grantee::pg_catalog.regrole::pg_catalog.text END,
                                      CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION'
                                           ELSE '' END)
               FROM pg_catalog.aclexplode(coalesce(
                        p.proacl, pg_catalog.acldefault('f', p.proowner))) a
              WHERE a.grantee OPERATOR(pg_catalog.<>) p.proowner
              ORDER BY a.grantee, a.privilege_type) AS grants,
       (SELECT pg_catalog.format('COMMENT ON ROUTINE %%s IS %%L', p.oid::pg_catalog.regprocedure,
                                 d.description)
          FROM pg_catalog.pg_description d
         WHERE d.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objoid OPERATOR(pg_catalog.=) p.oid
           AND d.objsubid OPERATOR(pg_catalog.=) 0) AS comment
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pgjobs'::pg_catalog.regnamespace
   AND (p.proname OPERATOR(pg_catalog.=) %(name)s
        OR pg_catalog.strpos(%(file)s, 'pgjobs.' OPERATOR(pg_catalog.||) p.proname
                                       OPERATOR(pg_catalog.||) '(') OPERATOR(pg_catalog.>) 0)"""
# The routine the refusal names by its signature, in every language: as
# regprocedure prints it in this session (42P13's hint "Use DROP FUNCTION
# pgjobs.f(integer) first."), or with ", " between the types as a statement
# naming one of the other kind prints it (42809: "pgjobs.f(integer, text) is
# not a procedure"); the longest signature the text holds.
NAMED_ROUTINE = FILE_ROUTINES + """
   AND (pg_catalog.strpos(%(text)s, p.oid::pg_catalog.regprocedure::pg_catalog.text)
            OPERATOR(pg_catalog.>) 0
        OR pg_catalog.strpos(%(text)s, pg_catalog.replace(
               p.oid::pg_catalog.regprocedure::pg_catalog.text, ',', ', '))
            OPERATOR(pg_catalog.>) 0)
 ORDER BY pg_catalog.length(p.oid::pg_catalog.regprocedure::pg_catalog.text) DESC
 LIMIT 1"""
# Of the routines set aside (%(oids)s), those the file created again under
# %(name)s with the same input types as another kind (function, procedure,
# aggregate, window function): what CREATE OR REPLACE refuses first.
CREATED_AS_ANOTHER_KIND = """
SELECT o.oid::pg_catalog.int8 AS oid
  FROM pg_catalog.pg_proc o
  JOIN pg_catalog.pg_proc n
    ON n.pronamespace OPERATOR(pg_catalog.=) o.pronamespace
   AND n.proname OPERATOR(pg_catalog.=) %(name)s
   AND n.proargtypes OPERATOR(pg_catalog.=) o.proargtypes
   AND n.prokind OPERATOR(pg_catalog.<>) o.prokind
 WHERE o.oid OPERATOR(pg_catalog.=) ANY (%(oids)s::pg_catalog.int8[]::pg_catalog.oid[])"""
# A dropped routine the file created again (not so when the file's statement
# was a DROP of an old signature), and whether the file gave it a comment.
RECREATED = """
SELECT pg_catalog.to_regprocedure(%(routine)s) IS NOT NULL AS recreated,
       pg_catalog.obj_description(pg_catalog.to_regprocedure(%(routine)s), 'pg_proc')
           IS NOT NULL AS commented"""
# What keeps DROP ROUTINE ... RESTRICT from dropping routine %(oid)s (2BP01):
# its normal dependants, a view's rule named as its view.
ROUTINE_DEPENDANTS = """
SELECT pg_catalog.string_agg(DISTINCT CASE
           WHEN r.oid IS NOT NULL
           THEN pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass,
                                              r.ev_class, 0)
           ELSE pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) END,
       ', ') AS dependants
  FROM pg_catalog.pg_depend d
  LEFT JOIN pg_catalog.pg_rewrite r
         ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
        AND r.oid OPERATOR(pg_catalog.=) d.objid
 WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
   AND d.refobjid OPERATOR(pg_catalog.=) %(oid)s::pg_catalog.oid
   AND d.deptype OPERATOR(pg_catalog.=) 'n'"""

# --- jobs: submit, observe, control ---------------------------------------

# The CLI's and the worker's control sessions keep the login's search_path (a
# target name such as `user_table_rows` resolves on it), so statements run
# there name pg_catalog's operator wherever pg_catalog has none taking exactly
# the operands: `checkpoint -> 'throttled'` compares as (jsonb, jsonb), and an
# `->(jsonb, jsonb)` that any role with CREATE on `public` planted there is
# the exact match PostgreSQL picks before pg_catalog's `->(jsonb, text)`
# (tests/test_trust_search_path.py).

# A run_at of -infinity or infinity (older releases accepted them; no
# migration rewrites such rows) reads as NULL: Python's datetime holds
# neither, and psycopg raised DataError for the whole row (pgjobs status,
# the dashboard's lists).
GET_JOB = """
WITH j AS (
    SELECT *,
           -- The writer it waits behind, if this role may see that job
           -- (pgjobs._gate_holder reads as the caller: the row policy holds).
           CASE WHEN status = 'queued' AND writes
                THEN pgjobs._gate_holder(target, scope, coalesce(gate_order, id))
           END AS waits_behind
      FROM pgjobs.jobs WHERE id = %(id)s)
SELECT id, kind, target::text AS target, scope, status, done, total, attempts, max_attempts,
       error, result, priority, created_at, started_at, finished_at,
       CASE WHEN pg_catalog.isfinite(run_at) THEN run_at END AS run_at, worker,
       lease_expires_at, cancel_requested_at, pause_requested_at,
       checkpoint OPERATOR(pg_catalog.->) 'throttled' AS throttled, waits_behind,
       -- The page's lock waits so far (pgjobs._run_page counts them): what a
       -- follower reports a slow job waited on (pgjobs.cli.progress.Waits).
       (checkpoint OPERATOR(pg_catalog.->>) 'lock_waits')::pg_catalog.int4 AS lock_waits,
       CASE WHEN waits_behind IS NOT NULL
            THEN 'waits its turn behind job ' || waits_behind::text || ', the writer of '
                 || target::text || ' scope ' || scope || ' ahead of it (one writing job '
                 || 'per scope at a time, in submission order): `pgjobs status '
                 || waits_behind::text || '` shows it'
            WHEN status = 'queued' AND kind = ANY (pgjobs._engine_kinds()) AND run_at <= now()
            THEN pgjobs._engine_wait()
            -- "running" alone hides a dead runner or worker (killed, its server
            -- restarted): say so, and what takes the job back.
            WHEN status = 'running' AND lease_expires_at < now()
            THEN 'its lease expired at ' || lease_expires_at::text
                 || ': the session running it is gone; the next runner or worker takes it'
                 || ' back from its checkpoint (`pgjobs prune` does at once)' END AS waiting
  FROM j
"""
# Whether a job is a fan-out job (pgjobs.submit_items): its worker and
# lease_expires_at are placeholders, its items are leased. Not in GET_JOB,
# whose columns are `status --json`'s and `watch --json`'s contract.
JOB_FANOUT = "SELECT fanout FROM pgjobs.jobs WHERE id = %(id)s"
# An item's states, in the order they are said: the CHECK of
# pgjobs.job_items.status (tests/test_cli_items.py holds them equal).
ITEM_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
# A page of a fan-out job's items in id order (`pgjobs items`), after the
# id %(after)s, of status %(status)s (NULL: every status): per status, a
# range of job_items_job_idx (job_id, status, id) read no further than the
# page, the ranges merged. A keyset page, so the millionth item costs what
# the first does; never OFFSET, never a sort of the job's items. Each status
# is a literal of its own branch (the branches not asked fold away), and
# its range is said as the index reads it, `job_id = J AND (status, id) >
# (S, after) AND status <= S` in (status, id) order: only that index gives
# the order, so the plan is its range whatever the statistics say. Said as
# `status = S AND id > after` in id order, job_items_pkey gave the order
# too, and the planner walked it from %(after)s, filtering every later item
# of every job, whenever the statistics made the status look common: a
# status bound from a list, or a job's items that had all been queued at
# the last ANALYZE and were succeeded since. Read as
# the caller: pgjobs.job_items' row policy shows a client the items of
# exactly the jobs it may see.
JOB_ITEMS_PAGE = """
SELECT * FROM (""" + "\n UNION ALL\n".join(f"""
(SELECT id, job_id, status, attempts, worker, lease_expires_at, run_at, created_at,
        started_at, finished_at, error, payload, result
   FROM pgjobs.job_items
  WHERE (%(status)s::pg_catalog.text IS NULL OR %(status)s::pg_catalog.text = '{status}')
    AND job_id = %(id)s::pg_catalog.int8
    AND (status, id) > ('{status}', %(after)s::pg_catalog.int8) AND status <= '{status}'
  ORDER BY status, id
  LIMIT %(limit)s::pg_catalog.int8)""" for status in ITEM_STATUSES) + """) AS page
 ORDER BY id
 LIMIT %(limit)s::pg_catalog.int8
"""
# A fan-out job's items counted by status (an index-only walk of the job's
# entries in job_items_job_idx), and its failed item of the lowest id with
# its error (the first entry of the job's failed range): what `pgjobs items`
# sums up on stderr and `pgjobs status` adds for a fan-out job.
JOB_ITEM_COUNTS = """
SELECT status, pg_catalog.count(*) AS items
  FROM pgjobs.job_items
 WHERE job_id = %(id)s::pg_catalog.int8
 GROUP BY status
"""
JOB_FIRST_FAILED_ITEM = """
SELECT id, error
  FROM pgjobs.job_items
 WHERE job_id = %(id)s::pg_catalog.int8 AND status = 'failed'
 ORDER BY id
 LIMIT 1
"""
LIST_JOBS = """
SELECT id, kind, target::text AS target, scope, status, done, total, attempts,
       created_at, started_at, finished_at, error
  FROM pgjobs.jobs
 WHERE (%(status)s::text IS NULL OR status = %(status)s)
 ORDER BY id DESC
 LIMIT %(limit)s
"""
CANCEL = "SELECT pgjobs.cancel(%(id)s)"
PAUSE = "SELECT pgjobs.pause(%(id)s)"
RESUME = "SELECT pgjobs.resume(%(id)s)"
RETRY = "SELECT pgjobs.retry(%(id)s)"

# --- engine -----------------------------------------------------------------

HEARTBEAT = "SELECT pgjobs.heartbeat(%(id)s, %(worker)s, %(done)s, %(checkpoint)s)"
COMPLETE = "SELECT pgjobs.complete(%(id)s, %(worker)s, %(result)s)"
FAIL = "SELECT pgjobs.fail(%(id)s, %(worker)s, %(error)s, %(retryable)s)"
# A failure whose retry the database decides (pgjobs.retryable_sqlstate, the one
# policy) unless the caller already knows (%(retryable)s not NULL: a storage
# error, a bad source). Returns whether the fail was recorded and the decision.
FAIL_BY_SQLSTATE = """
WITH decided AS (
    SELECT coalesce(%(retryable)s::boolean, pgjobs.retryable_sqlstate(%(sqlstate)s::text))
           AS retryable)
SELECT pgjobs.fail(%(id)s, %(worker)s, %(error)s, decided.retryable) AS recorded,
       decided.retryable
  FROM decided
"""
COMPLETE_MANY = "SELECT * FROM pgjobs.complete_many(%(ids)s, %(workers)s, %(results)s)"
# `pgjobs run` pins its session's search_path before calling the engine: the
# procedures are thin shells, and nothing on a client's path should matter.
# `pgjobs migrate` pins it too: the function files' DO blocks call format().
RUN_SEARCH_PATH = "SET search_path = pg_catalog, pg_temp"
# `pgjobs demo` pins every session of its own the same way (pgjobs/cli/demo.py).
PINNED_SEARCH_PATH = RUN_SEARCH_PATH
RUN = "CALL pgjobs.run(%(budget)s::interval)"
RUN_SEEN = """
SELECT b.at, b.since, j.*
  FROM (SELECT pg_catalog.now() AS at, pgjobs._runner_name('run') || '#' AS mine,
               coalesce(%(since)s::pg_catalog.timestamptz,
                        (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a
                          WHERE a.pid = pg_catalog.pg_backend_pid())) AS since) b
  LEFT JOIN LATERAL (
       SELECT id, kind, status, done, total, attempts, max_attempts, error, result, worker,
              started_at, run_at, updated_at,
              checkpoint OPERATOR(pg_catalog.->) 'throttled' AS throttled,
              (checkpoint OPERATOR(pg_catalog.->>) 'lock_waits')::pg_catalog.int4 AS lock_waits
         FROM pgjobs.jobs
        WHERE (status = ANY ('{queued,running,paused}'::pg_catalog.text[])
               OR finished_at >= b.since)
          AND updated_at >= b.since
          AND pg_catalog.starts_with(worker, b.mine)
        ORDER BY updated_at, id) j ON true
"""
"""What one runner of `pgjobs run` worked in its last CALL pgjobs.run (cli/runners.py
says it: one statement per budget, never one per page): the jobs whose claim identity
(pgjobs.jobs.worker, pgjobs._claim_identity) is this session's runner name, so claimed
by this backend (its pid is unique while it lives), changed since %(since)s, the
server's clock at this session's previous look (`at`; NULL: since the session began,
so no earlier backend of the same pid counts). Unfinished jobs and jobs finished since
then (a bitmap of two partial indexes), never the whole history: with 200,000 finished
and 2,000 queued jobs, 95 buffers and under a millisecond. One row with `at` and no job
when there is none."""
RUN_MINE = "SELECT pgjobs._runner_name('run') OPERATOR(pg_catalog.||) '#' AS mine"
"""The prefix of every claim identity (pgjobs.jobs.worker) a CALL pgjobs.run of this
session takes: what RUN_PROGRESS is given, read once per runner session."""
RUN_PROGRESS = """
SELECT j.id, j.kind, j.done, j.total, j.started_at,
       coalesce(%(since)s::pg_catalog.timestamptz,
                (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a
                  WHERE a.pid OPERATOR(pg_catalog.=) %(pid)s)) AS since
  FROM pgjobs.jobs j
 WHERE j.status OPERATOR(pg_catalog.=) 'running'
   AND pg_catalog.starts_with(j.worker, %(mine)s)
 ORDER BY j.id
"""
"""The jobs a runner's CALL pgjobs.run holds right now (claim identity %(mine)s, of
backend %(pid)s), read on a session of its own while that CALL runs: each page commits
its done count, so `pgjobs run` shows progress during a long budget instead of only
when the CALL ends (cli/runners.py, Progress). `since` is what RUN_SEEN would judge a
job resumed by (started before it). Running jobs only: the partial index of unfinished
jobs."""
RUN_JOB = "CALL pgjobs.run_job(%(id)s)"
PRUNE = "SELECT pgjobs.prune(%(retention)s::interval)"
# What a short retention would take now (`pgjobs prune` asks on a terminal).
PRUNE_SHORT = "SELECT %(retention)s::interval < interval '1 hour' AS short"
PRUNE_DOOMED = """
    SELECT count(*) AS jobs,
           count(*) FILTER (WHERE kind = 'export' AND status = 'succeeded') AS exports,
           max(finished_at) AS newest
      FROM pgjobs.jobs WHERE finished_at < now() - %(retention)s::interval"""
SCHEDULE = "SELECT pgjobs.schedule(%(options)s)"
# What a role lacks, asked after PostgreSQL refused it a privilege without a
# hint (pgjobs.db._refusal_hint): USAGE on schema pgjobs, EXECUTE on every
# pgjobs routine named %(name)s. Catalog reads only; any role may run them.
REFUSED = """
SELECT NOT pg_catalog.has_schema_privilege('pgjobs', 'USAGE') AS outside,
       EXISTS (SELECT FROM pg_catalog.pg_proc p
                WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pgjobs'::pg_catalog.regnamespace
                  AND p.proname OPERATOR(pg_catalog.=) %(name)s
                  AND NOT pg_catalog.has_function_privilege(p.oid, 'EXECUTE')) AS admin_only"""
UNSCHEDULE = "SELECT pgjobs.unschedule()"
ROTATE_CHANNEL_SECRET = "SELECT pgjobs.rotate_channel_secret()"
HELD_ELSEWHERE = """
SELECT pg_catalog.string_agg(id::text, ', ' ORDER BY id) AS ids,
       pg_catalog.max(lease_expires_at) AS until
  FROM pgjobs.jobs
 WHERE status = 'running' AND kind = ANY (pgjobs._engine_kinds())
   AND lease_expires_at >= pg_catalog.now()
"""
"""Delete and backfill jobs another session holds under a live lease: what a one-shot
`pgjobs run` could not take (a runner beside it, or one that died and whose lease
has not lapsed yet)."""
INSTALLED = "SELECT 1 FROM pgjobs.jobs LIMIT 0"
"""Raises (NotInstalled, with the migrate hint) in a database without pgjobs: what a
command that would otherwise only LISTEN (`watch` of every job) runs first, since a
LISTEN succeeds anywhere and would wait forever."""
LISTEN = "LISTEN pgjobs"
# A (target, scope)'s own channel, with the full events (pgjobs.channel); the
# name is an identifier, formatted in by pgjobs.db.listen.
CHANNEL = "SELECT pgjobs.channel(%(target)s::regclass, %(scope)s)"
LISTEN_CHANNEL = "LISTEN {channel}"
# A statement that does nothing, sent for its reply: the server sends every
# notification committed before it ahead of that reply (pgjobs.db.drain).
ROUND_TRIP = "SELECT"

# The calling role's room under max_item_bytes_per_client (`pgjobs room`):
# pgjobs.client_room() answers for the role the engine counts a submit for.
CLIENT_ROOM = """
SELECT role, kept_bytes, max_item_bytes_per_client, room_bytes, jobs_keeping_bytes, held
  FROM pgjobs.client_room()
"""

# --- pgjobs ui (ui/): every read runs as the DSN's role, so the row policies of
# pgjobs.jobs decide what the dashboard shows -----------------------------------
STATS = "SELECT pgjobs.stats() AS stats"
UI_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false) AS p"
# One page of the job list, in one statement (a list request sends nothing
# else but pgjobs.stats()). A ?scope= filter reads as the tenant on every
# registered target the DSN's role may read (only the ?target= one when it is
# given: an empty list names no other target as unfit, and no other's scope
# is cast): pgjobs.canonical_scope, once per
# target (the MATERIALIZED CTE: a LATERAL referenced twice ran it twice), as
# '<target>\t<canonical scope>' keys ('01' of an integer scope is '1'); the
# filter's own text is what a job of any other table holds. Every row carries
# the keys (scope_keys, which /events and the page's live filter read: a
# page's stream asks with limit 0, the keys alone) and the targets
# whose scope column cannot hold the scope (scope_unfit, 'target (type)': the
# empty list says why); a page with no job is one row whose id is NULL. Each
# job row says whether the role may cancel, pause, resume and retry it
# (controllable: pgjobs.controllable, once for the page's jobs), so the page
# offers only the actions the role may use.
UI_JOBS = """
WITH scoped AS MATERIALIZED (
    SELECT t.target::text AS target, t.scope_type::text AS scope_type,
           pgjobs.canonical_scope(t.target, %(scope)s::text) AS scope
      FROM pgjobs.targets t
     WHERE %(scope)s::text IS NOT NULL
       AND (%(target)s::text IS NULL OR t.target::text = %(target)s::text)),
keys AS (
    SELECT coalesce(array_agg(target || E'\\t' || scope ORDER BY target)
                        FILTER (WHERE scope IS NOT NULL), '{}') AS scope_keys,
           coalesce(array_agg(target || ' (' || scope_type || ')' ORDER BY target)
                        FILTER (WHERE scope IS NULL), '{}') AS scope_unfit
      FROM scoped),
page AS MATERIALIZED (
SELECT k.scope_keys, k.scope_unfit, j.*
  FROM keys k
  LEFT JOIN LATERAL (
    SELECT id, kind, target::text AS target, scope, status, done, total, attempts,
           max_attempts, error, result, created_at, started_at, finished_at,
           CASE WHEN pg_catalog.isfinite(run_at) THEN run_at END AS run_at, worker,
           lease_expires_at, cancel_requested_at, pause_requested_at,
           checkpoint OPERATOR(pg_catalog.->) 'throttled' AS throttled,
           extract(epoch FROM now() - started_at)::float8 AS ran_seconds
      FROM pgjobs.jobs
     WHERE (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
       AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
       AND (%(status)s::text IS NULL OR status = %(status)s::text)
       AND (%(target)s::text IS NULL OR target::text = %(target)s::text)
       AND (%(scope)s::text IS NULL OR scope = %(scope)s::text
            OR (target::text || E'\\t' || scope) = ANY (k.scope_keys))
     ORDER BY id DESC
     LIMIT %(limit)s) j ON true),
may AS (
    SELECT pgjobs.controllable(coalesce(array_agg(id) FILTER (WHERE id IS NOT NULL),
                                        '{}')) AS ids
      FROM page)
SELECT p.*, coalesce(p.id = ANY (m.ids), false) AS controllable
  FROM page p CROSS JOIN may m
 ORDER BY p.id DESC
"""
# Whether the DSN's role may cancel, pause, resume and retry these jobs (a
# job's own page and row): the ids it may.
UI_CONTROLLABLE = "SELECT pgjobs.controllable(%(ids)s::bigint[]) AS ids"
UI_JOB = """
SELECT id, kind, target::text AS target, scope, status, done, total, attempts, max_attempts,
       error, result, payload, options, checkpoint, predicate, priority, submitted_by,
       created_at, queued_at, CASE WHEN pg_catalog.isfinite(run_at) THEN run_at END AS run_at,
       started_at, heartbeat_at, updated_at, finished_at,
       worker, lease_expires_at, cancel_requested_at, pause_requested_at,
       checkpoint OPERATOR(pg_catalog.->) 'throttled' AS throttled,
       extract(epoch FROM now() - started_at)::float8 AS ran_seconds
  FROM pgjobs.jobs
 WHERE id = %(id)s
"""
# The jobs of a batch of NOTIFY events that the DSN's role may see (the rest
# of the events are dropped), with what a browser needs beside the payload.
UI_EVENT_JOBS = """
SELECT id, kind, target::text AS target, scope, created_at, status, done, total,
       extract(epoch FROM now() - started_at)::float8 AS ran_seconds
  FROM pgjobs.jobs
 WHERE id = ANY(%(ids)s::bigint[])
"""

# --- embedded dev cluster (pgjobs.embedded) ---------------------------------

EMBEDDED_DATABASE_EXISTS = (
    "SELECT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = %(name)s) AS exists"
)
EMBEDDED_CREATE_DATABASE = "CREATE DATABASE pgjobs"
EMBEDDED_PRELOADED = "SELECT pg_catalog.current_setting('shared_preload_libraries') AS libs"
EMBEDDED_CREATE_PG_CRON = "CREATE EXTENSION IF NOT EXISTS pg_cron"

# --- delete / backfill (cli/jobs.py) ------------------------------------------

SUBMIT_DELETE = """
SELECT pgjobs.submit_delete(%(target)s::regclass, %(scope)s, %(filter)s, %(exclude)s::text[],
                            %(options)s)
"""
SUBMIT_BACKFILL = """
SELECT pgjobs.submit_backfill(%(target)s::regclass, %(scope)s, %(filter)s, %(set)s, %(options)s)
"""
PREVIEW = """
SELECT pgjobs.preview(%(target)s::regclass, %(scope)s, %(filter)s, %(exclude)s::text[],
                      %(options)s)
"""

# --- demo (cli/demo.py) ------------------------------------------------------

DEMO_SETUP = """
CREATE SCHEMA IF NOT EXISTS demo;
DROP TABLE IF EXISTS demo.user_table_rows;
CREATE TABLE demo.user_table_rows (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_id   integer NOT NULL,
    data       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
# Tenant table 1 holds a quarter of the rows, table 2 a tenth; the rest
# spread over 198 tables.
DEMO_FILL = """
INSERT INTO demo.user_table_rows (table_id, data)
SELECT CASE WHEN i %% 4 = 0 THEN 1 WHEN i %% 10 = 1 THEN 2 ELSE 3 + (i %% 198) END,
       jsonb_build_object(
           'name', 'row ' || i,
           'status', (ARRAY['active', 'archived', 'draft'])[1 + i %% 3],
           'amount', (i::bigint * 7919) %% 10000 / 100.0,
           'owner', jsonb_build_object('team', 'team-' || (i %% 12)))
  FROM generate_series(1, %(rows)s) AS i
"""
# VACUUM, not only ANALYZE, after the fill: the fill's million inserts
# otherwise trigger an autovacuum of the whole table a minute later, in the
# middle of a demo job, and pause_on_autovacuum held that job for the whole
# cost-limited vacuum (about 14 s of 20,000 pages; h143). A table loaded in
# bulk wants its vacuum anyway (visibility map, hint bits).
DEMO_INDEXES = """
CREATE EXTENSION IF NOT EXISTS btree_gin SCHEMA demo;
CREATE INDEX user_table_rows_table_id_id_idx ON demo.user_table_rows (table_id, id);
CREATE INDEX user_table_rows_data_idx ON demo.user_table_rows
    USING gin (table_id, data jsonb_path_ops);
VACUUM (ANALYZE) demo.user_table_rows
"""
DEMO_REGISTER = """
SELECT pgjobs.register_target('demo.user_table_rows', 'id', 'table_id', 'created_at', 'data')
"""
DEMO_KEEP = """
SELECT array_agg(id::text) AS keys FROM (
    SELECT id FROM demo.user_table_rows
     WHERE table_id = 1 AND data @> '{"status": "archived"}' ORDER BY id LIMIT 3) k
"""
DEMO_RAW_COUNT = "SELECT count(*) AS n FROM demo.user_table_rows WHERE table_id = %(scope)s"
# One demo at a time on a database: held by the demo's session until it closes.
# The two-key form, (ADVISORY_CLASS, DEMO_LOCK_KEY): the one-key form's
# hashtext('pgjobs.demo') is a bigint key like any application's own, which a
# key of theirs could equal (a demo refused, or their lock taken); a two-key
# lock never conflicts with a one-key one (pg_locks.objsubid 2, not 1), and
# the class is pgjobs'. docs/operations.md "Advisory locks pgjobs takes"
# lists every key.
ADVISORY_CLASS = 1885825634
"""The first key of pgjobs' two-key advisory locks: the bytes of "pgjb" (0x70676A62)."""
DEMO_LOCK_KEY = 1
DEMO_LOCK = (f"SELECT pg_catalog.pg_try_advisory_lock({ADVISORY_CLASS}, {DEMO_LOCK_KEY}) "
             "AS locked")
DEMO_ALLOW_STORAGE = "SELECT pgjobs.allow_storage(%(prefix)s)"
DEMO_VISIBLE_COUNT = "SELECT pgjobs.visible_count('demo.user_table_rows', %(scope)s) AS n"

# --- exports (pgjobs.poller, pgjobs export / worker / url) ---------------------

EXPORT_SUBMIT = (
    "SELECT pgjobs.submit_export(%(target)s::regclass, %(scope)s, %(filter)s, %(options)s) AS id"
)
# A claim returns the claim's own identity in `worker` (name#token): every later
# call for that job passes it back, and is fenced on it.
EXPORT_CLAIM_ONE = (
    "SELECT id, worker FROM pgjobs.claim_export(%(id)s, %(worker)s, %(lease)s::interval)"
)
# Whether this session may call a pgjobs function, by its signature (true when
# it does not exist: the call itself then says what is missing). An export or
# import run in the CLI's own process claims its job, an administrator's call.
MAY_EXECUTE = """
SELECT coalesce(pg_catalog.has_function_privilege(
                    pg_catalog.to_regprocedure(%(function)s::pg_catalog.text),
                    'EXECUTE'), true) AS allowed
"""
# A canceled export's cleanup holds its job's row while it removes (FOR SHARE:
# pgjobs.retry, which locks it FOR UPDATE, waits): no row when the job is not
# canceled (a cancel still pending, or retried already).
# The row an ended export's cleanup holds (FOR SHARE) while it removes what
# its attempt wrote (Exporter._cleanup_hold): the one a next owner must change
# to continue it. The job's, while it is canceled, or failed for good by this
# very attempt (its worker); pgjobs.retry waits for it.
HOLD_CANCELED_JOB = """
SELECT id FROM pgjobs.jobs WHERE id = %(id)s AND status = 'canceled' FOR SHARE
"""
# Whether a connection still answers (Exporter._still_held: its hold's locks
# are in force while it does).
SELECT_ONE = "SELECT 1"
HOLD_FAILED_JOB = """
SELECT id FROM pgjobs.jobs
 WHERE id = %(id)s AND status = 'failed' AND worker = %(worker)s FOR SHARE
"""
# A part's: its row, while no claim has taken it since this attempt's
# (pgjobs.claim_export_part skips a held part; its worker is the claim's).
HOLD_ENDED_PART = """
SELECT part FROM pgjobs.export_parts
 WHERE job_id = %(id)s AND part = %(part)s AND worker = %(worker)s FOR SHARE
"""
EXPORT_JOB = """
SELECT id, kind, target::text AS target, scope, status, payload, checkpoint, attempts,
       max_attempts, worker, extract(epoch FROM lease)::float8 AS lease_seconds, done, total,
       error, result, cancel_requested_at
  FROM pgjobs.jobs WHERE id = %(id)s
"""
# Whether a URI lies under the storage allow-list (pgjobs.allow_storage) for a
# job of `scope` (pgjobs.jobs.scope: a per-tenant prefix allows only its own
# folder): the worker asks at run time what the submit decided, so a
# destination changed in the jobs table, or a prefix disallowed since, is refused.
# The allow-list prefix admitting a URI for a job's scope (NULL: none, so not
# allowed: pgjobs._storage_allowed_for's rule), asked once per attempt: a
# file:// path's trusted root, at and above which symbolic links are followed.
STORAGE_ROOT = "SELECT pgjobs._storage_root_for(%(uri)s, %(scope)s)"
# The same for an object queued for deletion. pgjobs.prune deletes the job row
# in the statement that queues its objects, so its scope is mostly gone: a
# per-tenant prefix's root is its text before `{scope}` whatever the scope, so
# the folder the object lies in at `{scope}`'s place stands for it (the root is
# still only text an administrator wrote, above the URI); the job's scope when
# the row is there, and NULL (prefixes without `{scope}`), are asked too.
STORAGE_DELETION_ROOT = """
SELECT (SELECT r.root
          FROM (SELECT (SELECT scope FROM pgjobs.jobs WHERE id = %(job)s)
                UNION ALL
                SELECT split_part(substr(%(uri)s, strpos(a.prefix || '/', '/{scope}/') + 1),
                                  '/', 1)
                  FROM pgjobs.storage_allow a
                 WHERE strpos(a.prefix, '{scope}') > 0) s(scope)
         CROSS JOIN LATERAL (SELECT pgjobs._storage_root_for(%(uri)s, s.scope)) r(root)
         WHERE r.root IS NOT NULL
         ORDER BY length(r.root) DESC
         LIMIT 1) AS root
"""
# One keyset chunk, in its own REPEATABLE READ transaction: this, then the COPY
# it returns. enable_seqscan off: jsonb predicates are unestimatable and the
# planner would rather scan every tenant's rows than walk the (scope, key) index.
# Its `lsn`, taken in the same statement after the chunk's snapshot, is a position
# no earlier than everything that snapshot sees: the next chunk (in this attempt or
# a resumed one, on any server) waits until its server has reached it, so reads
# never go back in time (poller/standby.py); no extra round trip per chunk.
# A chunk is two round trips at most: its transaction begins in the round trip
# of its first statement (db.begin_chunk sends the BEGIN and this statement as
# one query) and commits in the round trip of its COPY (the COMMIT sent after
# the COPY in one query; db.copy_out checks its result), instead of one round
# trip each of their own. From the primary, the next chunk's BEGIN and statement
# travel with the COPY too (db.copy_then_begin): one round trip a chunk. Under
# load a round trip waits for the backend and then the reader to be scheduled.
CHUNK_BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
COPY_THEN_COMMIT = "{copy}; COMMIT"
EXPORT_CHUNK_SQL = """
SELECT c.copy_sql, c.next_after, pg_catalog.set_config('enable_seqscan', 'off', true) AS seqscan,
       (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
             ELSE pg_catalog.pg_current_wal_insert_lsn() END)::text AS lsn
  FROM pgjobs.export_chunk_sql(%(id)s, %(after)s, %(limit)s, %(until)s, %(next)s) c
"""
# The next chunk's bound alone, walked ahead on the control connection while a
# chunk streams (poller/export.py, _Ahead); passed back as p_next above. The
# chunk's checks without its mask and COPY text, which the chunk builds itself
# (pgjobs.export_chunk_bound; export_chunk_sql built both, about twice the work).
EXPORT_CHUNK_BOUND = """
SELECT pgjobs.export_chunk_bound(%(id)s, %(after)s, %(limit)s, %(until)s)
"""
EXPORT_RELEASE = "SELECT pgjobs.release(%(id)s, %(worker)s)"
# What a worker's control statement gave up waiting for (55P03): the job's
# row or its table, and who holds it (the runner's warning says the same).
LOCK_WAIT_PROBLEM = "SELECT p.message FROM pgjobs._lock_wait_problem(%(id)s, %(waited)s) p"
# Parallel exports (option parallel > 1): the parts of one job, each claimed,
# leased, fenced and checkpointed on its own (poller/parallel.py).
EXPORT_PARTS_SPLIT = "SELECT pgjobs.export_parts_split(%(id)s, %(worker)s)"
EXPORT_PART_CLAIM = """
SELECT job_id, part, after_key, until_key, attempts, worker, checkpoint
  FROM pgjobs.claim_export_part(%(id)s, %(worker)s, %(lease)s::interval)
"""
EXPORT_PART_HEARTBEAT = """
SELECT pgjobs.export_part_heartbeat(%(id)s, %(part)s, %(worker)s, %(done)s, %(checkpoint)s,
                                    %(lease)s::interval)
"""
EXPORT_PART_FINISH = """
SELECT pgjobs.export_part_finish(%(id)s, %(part)s, %(worker)s, %(status)s, %(result)s, %(error)s)
"""
EXPORT_PARTS_REDO = """
SELECT pgjobs.export_parts_redo(%(id)s, %(worker)s, %(parts)s::integer[], %(why)s)
"""
EXPORT_PARTS = """
SELECT part, status, attempts, done, result, error,
       coalesce((checkpoint OPERATOR(pg_catalog.->>) 'bytes')::bigint, 0) AS bytes,
       checkpoint OPERATOR(pg_catalog.->) 'files' AS files,
       checkpoint OPERATOR(pg_catalog.->) 'upload' AS upload,
       checkpoint OPERATOR(pg_catalog.->) 'created' AS created
  FROM pgjobs.export_parts WHERE job_id = %(id)s ORDER BY part
"""
# What each part of a canceled parallel export may have written (the coordinator's
# cleanup, poller/parallel.py): its result and checkpoint (object recorded or
# being finished, files recorded or being written, upload).
EXPORT_PARTS_WRITTEN = """
SELECT part, result, checkpoint FROM pgjobs.export_parts WHERE job_id = %(id)s ORDER BY part
"""
RETRYABLE_SQLSTATE = "SELECT pgjobs.retryable_sqlstate(%(sqlstate)s)"
# The Parquet columns of an export and their types, as the database decides them.
EXPORT_PARQUET_COLUMNS = "SELECT pgjobs.export_parquet_columns(%(id)s)"
# Every setting that changes how a value prints, pinned on the export's data
# connection whatever the worker's DSN or role defaults say: an export (and a
# resumed one, under another worker) is written in these settings, byte for byte.
# And search_path: each chunk's COPY is SQL text pgjobs.export_chunk_sql wrote (the
# job's predicate, the mask, the columns), run here, on the worker's role, which
# must resolve no function or operator that another role planted on its login's
# path (`"$user", public`); pgjobs' functions and `pgjobs run` pin the same path.
# A worker's control connection waits this long for a lock (db.wait_for_job_rows_at_most).
SET_LOCK_TIMEOUT = "SELECT pg_catalog.set_config('lock_timeout', %(timeout)s, false)"
# The session of `pgjobs run`'s progress looks (cli/runners.py, Progress): a
# look waits at most %(lock)s for a lock and runs at most %(statement)s.
SET_LOOK_TIMEOUTS = ("SELECT pg_catalog.set_config('lock_timeout', %(lock)s, false), "
                     "pg_catalog.set_config('statement_timeout', %(statement)s, false)")
# A session's own lock timeout, restored when a worker hands a borrowed connection back.
SHOW_LOCK_TIMEOUT = "SELECT pg_catalog.current_setting('lock_timeout')"

EXPORT_SESSION_SETTINGS = """
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false),
       pg_catalog.set_config('TimeZone', 'UTC', false),
       pg_catalog.set_config('DateStyle', 'ISO, YMD', false),
       pg_catalog.set_config('IntervalStyle', 'postgres', false),
       pg_catalog.set_config('extra_float_digits', '3', false),
       pg_catalog.set_config('bytea_output', 'hex', false),
       pg_catalog.set_config('standard_conforming_strings', 'on', false),
       pg_catalog.set_config('lc_monetary', 'C', false),
       pg_catalog.set_config('xmloption', 'content', false)
"""
# A data connection's whole setup in one round trip (db.connect_reader and
# db.connect_writer): the settings above and its lock timeout (SET_LOCK_TIMEOUT)
# in one statement, instead of a round trip each before its first chunk.
DATA_SESSION_SETTINGS = (EXPORT_SESSION_SETTINGS.rstrip()
                         + ",\n       pg_catalog.set_config('lock_timeout', %(timeout)s, false)\n")
EXPORT_COUNT = (
    "SELECT pgjobs.visible_count(%(target)s::regclass, %(scope)s, %(filter)s) AS n"
)
# Jobs whose upload leftovers the stale sweep keeps: a paused export resumes
# its upload, and so does a failed one (out of attempts on transient errors:
# a permanent error discards them) that is retried before it is pruned.
EXPORT_ACTIVE_JOBS = """
SELECT id FROM pgjobs.jobs WHERE id = ANY(%(ids)s)
   AND status IN ('queued', 'running', 'paused', 'failed')
"""
# The destinations, other than a worker's own --storage, that exports which
# ended (neither active nor failed: EXPORT_ACTIVE_JOBS) wrote under, as their
# checkpoints record them (`prefix`: a part's is its job's), with the trusted
# root of each: only those the storage allow-list still admits for the job's
# scope (pgjobs._storage_root_for, the check a worker makes before it writes).
# The stale-upload sweep looks under each one too (staged parts, open S3
# multipart uploads, temporary files), not only under --storage. Only jobs
# that ended between --stale-after and an hour more ago: their leftovers are
# stale by then (written before the job ended), and the sweep, every 30 s,
# has had 120 turns at them after; so a worker lists the destinations of one
# hour's ended exports, not of every one still kept (per-tenant prefixes:
# one listing each).
EXPORT_SWEEP_PREFIXES = """
SELECT u.prefix, pgjobs._storage_root_for(u.prefix, u.scope) AS root
  FROM (SELECT DISTINCT j.checkpoint ->> 'prefix' AS prefix, j.scope
          FROM pgjobs.jobs j
         WHERE j.finished_at <= now() - %(stale)s::interval
           AND j.finished_at > now() - %(stale)s::interval - interval '1 hour'
           AND j.kind = 'export'
           AND j.status IN ('succeeded', 'canceled')
           AND jsonb_typeof(j.checkpoint -> 'prefix') = 'string'
           AND j.checkpoint ->> 'prefix' <> %(own)s) u
 WHERE pgjobs._storage_root_for(u.prefix, u.scope) IS NOT NULL
"""
STORAGE_DELETIONS_CLAIM = (
    "SELECT id, uri, job_id, upload"
    "  FROM pgjobs.claim_storage_deletions(%(limit)s, %(hold)s::interval, true)"
)
STORAGE_DELETION_START = "SELECT pgjobs.start_storage_deletion(%(id)s)"
STORAGE_DELETION_FINISH = "SELECT pgjobs.finish_storage_deletion(%(id)s, %(error)s)"

# --- SQL reference (pgjobs/reference.py) ----------------------------------------

REFERENCE_ROUTINES = """
SELECT p.proname AS name,
       pg_catalog.format('%%s pgjobs.%%s(%%s)%%s',
              CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname,
              pg_catalog.pg_get_function_arguments(p.oid),
              CASE WHEN p.prokind = 'p' THEN ''
                   ELSE ' RETURNS ' || pg_catalog.pg_get_function_result(p.oid) END)
         AS signature,
       pg_catalog.obj_description(p.oid, 'pg_proc'::pg_catalog.name) AS comment,
       CASE WHEN p.prosecdef THEN 'definer' ELSE 'invoker' END AS security,
       pg_catalog.has_function_privilege('pgjobs_client'::pg_catalog.name, p.oid,
                                         'EXECUTE'::pg_catalog.text) AS client
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'pgjobs'::pg_catalog.regnamespace
   AND p.proname OPERATOR(pg_catalog.!~) '^_'::pg_catalog.text
 ORDER BY p.proname, pg_catalog.pg_get_function_arguments(p.oid)
"""

# --- doctor (cli/doctor.py) ---------------------------------------------------------

DOCTOR = """
SELECT check_name, status, target, detail, fix FROM pgjobs.doctor(%(target)s::regclass)
"""

# --- imports (pgjobs.poller.importer, pgjobs import / worker) -------------------

IMPORT_SUBMIT = (
    "SELECT pgjobs.submit_import(%(target)s::regclass, %(scope)s, %(source)s, %(options)s) AS id"
)
IMPORT_CLAIM_ONE = (
    "SELECT id, worker FROM pgjobs.claim_import(%(id)s, %(worker)s, %(lease)s::interval)"
)
# The worker claims both kinds it runs; `kind` says which runner takes the job.
WORKER_CLAIM = (
    "SELECT id, worker, kind FROM pgjobs.claim(ARRAY['export', 'import'], %(worker)s,"
    " %(lease)s::interval, %(limit)s)"
)
# On the import's data connection: checks the fields, creates the staging table,
# returns the COPY statement of a batch.
# Before each import batch (the worker's data session keeps the pacing state):
# NULL = go, 'more' = held (call again), else the job ended (failed).
IMPORT_THROTTLE = "SELECT pgjobs._throttle(%(id)s, %(worker)s, NULL) AS r"
# What holds an import's next batch (`pgjobs import` says it), as _throttle recorded it.
IMPORT_THROTTLED = ("SELECT checkpoint OPERATOR(pg_catalog.->) 'throttled' FROM pgjobs.jobs"
                    " WHERE id OPERATOR(pg_catalog.=) %(id)s::bigint")
IMPORT_PREPARE = "SELECT pgjobs.import_prepare(%(id)s, %(worker)s, %(fields)s::text[])"
# In the batch's transaction, right after its COPY: rows, rejects and checkpoint.
# The lines of the staged records go as one comma-separated text (an int list
# adapts ten times slower); lines and records (CSV source texts) may be NULL:
# the result is then {"status": "records"} if a record was refused. The records go
# as one JSON array (a text[] parameter adapted about 10 µs a record).
IMPORT_BATCH = """
SELECT pgjobs.import_batch(%(id)s, %(worker)s, %(fields)s::text[],
                           pg_catalog.string_to_array(%(lines)s, ',')::bigint[],
                           %(done)s, %(total)s, %(checkpoint)s, %(rejects)s,
                           CASE WHEN %(records)s::json IS NOT NULL THEN ARRAY(
                               SELECT e.v
                                 FROM pg_catalog.json_array_elements_text(%(records)s::json)
                                      WITH ORDINALITY e (v, i)
                                ORDER BY e.i) END) AS r
"""
IMPORT_REJECTS = """
SELECT line, reason, record FROM pgjobs.import_rejects WHERE job_id = %(id)s ORDER BY line
"""
IMPORT_REJECTS_KEPT = "SELECT EXISTS (SELECT FROM pgjobs.import_rejects WHERE job_id = %(id)s)"
# Its rejects object about to be created where nothing is: the checkpoint names
# it (rejects_uri) for every later attempt and for pruning, first.
IMPORT_REJECTS_PLACED = (
    "SELECT pgjobs.import_rejects_placed(%(id)s, %(worker)s, %(uri)s) AS r"
)
# The name turned out to hold another's object: the checkpoint stops naming it.
IMPORT_REJECTS_TAKEN = (
    "SELECT pgjobs.import_rejects_taken(%(id)s, %(worker)s, %(uri)s) AS r"
)
# About to create the named rejects object conditionally with bytes of this
# SHA-256: recorded, so that a later attempt recognises the object after a kill.
IMPORT_REJECTS_CREATING = (
    "SELECT pgjobs.import_rejects_creating(%(id)s, %(worker)s, %(uri)s, %(sha256)s) AS r"
)
# The conditional create succeeded: the checkpoint records the object as the job's.
IMPORT_REJECTS_CREATED = (
    "SELECT pgjobs.import_rejects_created(%(id)s, %(worker)s, %(uri)s) AS r"
)
# As an import fails with rejects kept: its result names the rejects object.
IMPORT_REJECTS_WRITTEN = (
    "SELECT pgjobs.import_rejects_written(%(id)s, %(worker)s, %(uri)s) AS r"
)

# --- Export reads from a standby (pgjobs/poller/standby.py) ------------------------

# The job's submit position (NULL for jobs submitted before migration 0019).
READ_SUBMIT_LSN = "SELECT submit_lsn::text AS lsn FROM pgjobs.jobs WHERE id = %(id)s"
# Which server a data connection reached: its cluster (system identifier) and
# database, so that a read DSN naming another cluster or database is refused.
READ_SERVER_IDENTITY = """
SELECT (SELECT s.system_identifier::text FROM pg_catalog.pg_control_system() s) AS system,
       pg_catalog.current_database()::text AS database
"""
# The same without the identifier, where pg_control_system() is not granted.
READ_CURRENT_DATABASE = "SELECT pg_catalog.current_database()::text AS database"
# A table name as PostgreSQL's regclass reads it, only to learn whether it
# names another database (0A000, "cross-database references are not
# implemented"): to_regclass is NULL for a table that is not there and raises
# that for a database name PostgreSQL does not take for the current one.
READ_TARGET_NAME = "SELECT pg_catalog.to_regclass(%(name)s::pg_catalog.text) IS NOT NULL AS found"
# Before a chunk's transaction, on the read connection: how far the server has
# replayed (a primary: how far it has written), whether replay is paused, and
# whether the job row is visible there yet (it is once the submit's commit is
# replayed). The chunk's snapshot, taken later, sees at least this much.
READ_READY = """
SELECT pg_catalog.pg_is_in_recovery() AS standby,
       (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
             ELSE pg_catalog.pg_current_wal_insert_lsn() END)::text AS replayed,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused()
            ELSE false END AS paused,
       EXISTS (SELECT FROM pgjobs.jobs WHERE id = %(id)s) AS job_visible
"""
# On the control connection (the primary), now and then: how stale a standby
# read may be is bounded by requiring, later, what the primary had written now.
READ_PRIMARY_POSITION = "SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn"
