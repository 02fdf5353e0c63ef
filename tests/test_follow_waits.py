"""A followed job says what it waited on (h143). `pgjobs demo` showed a job 15 s
slower than its work, twice, and nothing said why: a throttling signal
(pause_on_autovacuum: autovacuum vacuumed the demo's table, cost-limited, for
about 14 s) held its pages; checkpoint.throttled, the only trace, is dropped
by the first page after the spell, and the `throttled` event is a NOTIFY a
poller never hears. The demo and `pgjobs watch` / `--wait` now end a job with
one line per cause (pgjobs.cli.progress.Waits): held spells by reason, lock
waits, retries from the checkpoint, runners it passed between; not time
queued.

The hold here is an old transaction (max_xact_age): a signal a test can
start and end. The transaction ends only once the follower has read a held
row (its row reader is wrapped to say so), so no timing decides what the
follower sees."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from rich.console import Console

from pgjobs import db
from tests.support import (
    Conn,
    Target,
    make_rows_target,
    old_transaction,
    seed,
    submit_delete,
)

HELD_OPTIONS = {"max_xact_age": "1 second", "page_size": 20}


@pytest.fixture
def target(conn: Conn) -> Target:
    t = make_rows_target(conn)
    seed(conn, t, 900)
    return t


@pytest.fixture
def seen_held(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a follower's row read (db.get_job) returned the job held."""
    seen = threading.Event()
    real = db.get_job

    def get_job(conn: Any, job_id: int) -> Any:
        row = real(conn, job_id)
        if row is not None and isinstance(row.get("throttled"), dict):
            seen.set()
        return row

    monkeypatch.setattr(db, "get_job", get_job)
    return seen


@pytest.fixture
def held_job(conn: Conn, make_conn: Callable[..., Conn], target: Target,
             seen_held: threading.Event) -> Iterator[int]:
    """A delete held by an old transaction after its first page, run by
    pgjobs.run_job in a thread; the transaction ends once a follower saw the
    job held (or after 60 s: the test then fails on what it saw)."""
    job_id = submit_delete(conn, target, "2", options=HELD_OPTIONS)
    idle = old_transaction(conn, make_conn)
    runner = make_conn()
    work = threading.Thread(target=lambda: runner.execute("CALL pgjobs.run_job(%s)", (job_id,)),
                            daemon=True)
    work.start()

    def end_when_seen() -> None:
        seen_held.wait(timeout=60)
        idle.rollback()

    ender = threading.Thread(target=end_when_seen, daemon=True)
    ender.start()
    yield job_id
    ender.join(timeout=60)
    work.join(timeout=60)
    assert not work.is_alive()


def test_the_demo_says_a_held_job_waited_and_on_what(dsn: str, held_job: int,
                                                     seen_held: threading.Event) -> None:
    from pgjobs.cli.demo import _follow

    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        outcome = _follow(console, conn, held_job, "delete")
    assert seen_held.is_set()
    assert outcome.status == "succeeded"
    held = [w for w in outcome.waits if w.startswith("held ")]
    assert len(held) == 1, outcome.waits
    assert "in 1 spell: oldest transaction open for" in held[0]
    assert held[0].endswith("(max_xact_age 1 second)")
    # One line per cause, under the job's bar: nothing else held it.
    assert outcome.waits == held
    printed = [line for line in out.getvalue().splitlines() if "waited:" in line]
    assert printed == [f"  delete waited: {held[0]}"]


def test_watch_ends_a_held_job_with_what_it_waited_on(dsn: str, held_job: int,
                                                      seen_held: threading.Event) -> None:
    from pgjobs.cli.main import main

    result = CliRunner().invoke(main, ["--dsn", dsn, "watch", str(held_job)])
    assert result.exit_code == 0, result.output
    assert seen_held.is_set()
    waited = [line for line in result.stderr.splitlines() if "waited:" in line]
    assert len(waited) == 1, result.stderr
    assert waited[0].startswith(f"job {held_job} waited: held ")
    assert "oldest transaction open for" in waited[0]


def test_a_job_that_did_not_wait_says_nothing(dsn: str, conn: Conn, target: Target) -> None:
    from pgjobs.cli.demo import _follow

    job_id = submit_delete(conn, target, "2", options={"page_size": 20})
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    out = io.StringIO()
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as c:
        outcome = _follow(Console(file=out, width=200), c, job_id, "delete")
    assert outcome.waits == []
    assert "waited" not in out.getvalue()


def _row(status: str, **fields: Any) -> dict[str, Any]:
    return {"status": status, "attempts": 1, "worker": "w#1", "throttled": None,
            "lock_waits": None, "waiting": None, **fields}


def test_waits_counts_spells_lock_waits_retries_and_hand_overs() -> None:
    """Each cause the row shows is one line, counted: two spells of one signal
    (a new `since`), a reason whose numbers change within one spell, lock
    waits, an attempt retried, the job passed to another runner."""
    from pgjobs.cli.progress import Waits

    av = "autovacuum is working on t (pause_on_autovacuum)"
    waits = Waits()
    rows = [
        (0.0, _row("queued", attempts=0, worker=None, waiting="pg_cron's next tick")),
        (2.0, _row("running")),
        (3.0, _row("running", throttled={"reason": av, "since": "s1"})),
        (5.0, _row("running", throttled={"reason": av, "since": "s1"})),
        (6.0, _row("running", lock_waits=3)),
        (7.0, _row("running", lock_waits=3, throttled={"reason": av, "since": "s2"})),
        (8.0, _row("running", lock_waits=4, throttled={
            "reason": "WAL rate: 9 bytes/s (max_wal_rate 1)", "since": "s3"})),
        (8.5, _row("running", lock_waits=4, throttled={
            "reason": "WAL rate: 12 bytes/s (max_wal_rate 1)", "since": "s3"})),
        (9.0, _row("running", attempts=2, worker="w#2")),
        (10.0, _row("succeeded", attempts=2, worker="w#2")),
    ]
    for now, row in rows:
        waits.see(row, now)
    assert waits.lines(10.0) == [
        f"held 4.0 s in 2 spells: {av}",
        "held 1.0 s in 1 spell: WAL rate: 12 bytes/s (max_wal_rate 1)",
        "4 lock waits on rows of its pages (each page rolled back and tried again: "
        "checkpoint.lock_waits)",
        "retried 1 time from its checkpoint after a failed attempt",
        "changed hands 1 time (handed back at a budget's end, or its lease lost), resumed "
        "from its checkpoint",
    ]  # not the 2 s queued: waiting for a runner is no wait of the job's


def test_the_demo_vacuums_its_fill_and_counts_the_import_in_bytes(cluster_url: str,
                                                                   tmp_path: Any) -> None:
    """The fill's million inserts set off an autovacuum of the whole table a
    minute later, in the middle of a demo job, which pause_on_autovacuum held
    for all of it: the demo VACUUMs after the fill (a manual vacuum, counted).
    The import's done counts bytes: its bar says kB/s or MB/s, not rows/s."""
    from pgjobs.cli.demo import run_demo
    from tests.support.databases import empty_database

    with empty_database(cluster_url, "demo_waits") as dsn, \
            psycopg.connect(dsn, autocommit=True) as conn:
        out = io.StringIO()
        outcomes = run_demo(dsn, 1000, f"file://{tmp_path}",
                            console=Console(file=out, width=200))
        assert [o.status for o in outcomes] == ["succeeded"] * 4
        vacuums = conn.execute("SELECT vacuum_count FROM pg_stat_user_tables"
                               " WHERE relid = 'demo.user_table_rows'::regclass").fetchone()
        assert vacuums is not None and vacuums[0] >= 1
        text = out.getvalue()
        import_bar = [line for line in text.splitlines() if line.startswith("import ")]
        # In kB/MB (pgjobs.cli.output.per_second), never as rows.
        assert import_bar and all(re.search(r"\d [kMGT]?B/s", line) and "rows" not in line
                                  for line in import_bar), text
        assert "waited" in text  # the summary's column
