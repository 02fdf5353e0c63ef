"""What tests share, in one package. Import helpers from here:

    from tests.support import who, job, scalar, wait_for, make_rows_target, ...

Modules (import a name from the package; the modules only say where it lives):

* jobs       submit / claim a generic job, `job` (the one job-row reader),
             `scalar`, `who` (a claim's identity), expire_lease,
             old_transaction (a job held by max_xact_age), drain_notifies
* waiting    `wait_for`, the one polling loop
* targets    `build_target` (the one way to make a target: table, index,
             register) and its shapes: make_target, make_rows_target (+ seed,
             snapshot, the reference row set, delete/backfill/visible drivers)
* exports    the hostile `items` target (make_items), plain-COPY references,
             in-process and worker-process exports, a parallel export's parts
             (part_rows, MANY_PARTS), a killed worker's leases lapsed
             (LONG_LEASE, expire_leases)
* imports    the `people` target (make_people), in-process imports
* databases  database_name (with the process id: every database the suite
             makes), empty_database, with_database, admin_execute,
             migrate_at_once (`pgjobs migrate` several times at one moment)
* storage    FIXTURES only (local_dir, s3_env, bucket, big, az_container,
             gcs_bucket, ...): registered by tests/conftest.py; request them by
             name, never import them
* not re-exported here (import the module): reach (the trusted world of the
  reach tests, built on tests/test_trust_reached_tables.py), teardown_watch (the
  teardown watch that ends a session a test left in a transaction),
  pgcluster and standby (servers),
  net (free_port), s3_faults (a fault-injecting S3 proxy), filter_reference
  (the Python filter evaluator), ui (skips when the dashboard extra is missing;
  scoped_login, a login role under pgjobs.allowed_scopes), browser (a plugin:
  the ``browser`` fixture, headless Chromium recording what a page showed and
  received),
  roles (throwaway roles; a statement run as a role: in_role / scalar_as in a
  transaction of its own, acting_as on the session; a client's kept bytes),
  cli (the `pgjobs` entry point and an environment with no PGJOBS_* or
  DATABASE_URL left to steer it), hostile (a client's text that a terminal or
  a log would act on, and how an operator's channel shows it)
"""

from __future__ import annotations

from tests.support.databases import (
    admin_execute,
    database_name,
    empty_database,
    migrate_at_once,
    with_database,
)
from tests.support.exports import (
    BIG_TENANT_1,
    ITEMS_TENANT_1,
    LONG_LEASE,
    MANY_PARTS,
    NASTY,
    NATIVE_S3,
    add_items,
    checkpoint_parts,
    content,
    expire_leases,
    jsonl_reference,
    leftovers,
    make_items,
    new_bucket,
    object_bytes,
    open_uploads,
    part_rows,
    plain_copy,
    reader_statements,
    resume_after_kill,
    run_export,
    start_worker,
    submit_export,
)
from tests.support.imports import (
    LOSSES,
    allow,
    allowed_folder,
    claim_import,
    drop_client,
    import_as,
    import_outcome,
    lose_right,
    make_people,
    one_record,
    people_client,
    run_import,
    run_in_batches,
    submit_import,
)
from tests.support.jobs import (
    claim,
    drain_notifies,
    expire_lease,
    job,
    old_transaction,
    scalar,
    submit,
    unpin_everywhere,
    who,
)
from tests.support.targets import (
    KEY_DEFS,
    SCOPE_DEFS,
    Conn,
    Row,
    Target,
    build_target,
    crash_runner_mid_job,
    cutoff_of,
    insert_row,
    job_rows,
    make_rows_target,
    make_target,
    run_job,
    run_pages,
    seed,
    slow_deletes,
    snapshot,
    submit_backfill,
    submit_delete,
    visible_keys,
)
from tests.support.waiting import wait_for

__all__ = [
    "Conn", "KEY_DEFS", "NASTY", "Row", "SCOPE_DEFS", "Target", "add_items", "admin_execute",
    "allow", "build_target", "checkpoint_parts", "claim", "claim_import", "content",
    "crash_runner_mid_job", "cutoff_of", "database_name", "drain_notifies", "empty_database",
    "expire_lease", "expire_leases", "insert_row", "job", "job_rows", "jsonl_reference",
    "leftovers", "make_items",
    "make_people", "make_rows_target", "make_target", "migrate_at_once", "object_bytes",
    "old_transaction", "plain_copy", "run_export",
    "run_import", "run_job", "run_pages", "scalar", "seed", "slow_deletes", "snapshot",
    "start_worker", "submit", "submit_backfill", "submit_delete", "submit_export", "submit_import",
    "visible_keys", "wait_for", "who", "with_database",
    "LOSSES", "allowed_folder", "drop_client", "lose_right", "people_client",
    "ITEMS_TENANT_1", "MANY_PARTS", "part_rows",
    "BIG_TENANT_1", "LONG_LEASE", "NATIVE_S3", "new_bucket", "open_uploads", "reader_statements",
    "resume_after_kill", "unpin_everywhere", "import_as", "import_outcome", "one_record",
    "run_in_batches",
]
