"""`pgjobs import` run in this process says what holds it (stop 59). An import
is a writing job: a throttling signal (pause_on_autovacuum, max_xact_age,
replica lag, ...) holds its next batch, and the bar stalled without a word
while the importer waited in pgjobs._throttle; once the import ended nothing
said it had waited either (`pgjobs watch` and the demo did, h143, from the job
rows they poll; the import command polls none while it runs the job itself).
Now it says the reason once a spell starts and ends with one line per cause,
as `pgjobs watch` does.

The hold is an old open transaction (max_xact_age), ended only once the job's
row shows the import held: no timing decides what the command sees."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner

from pgjobs.cli.main import main
from tests.support import old_transaction, scalar, wait_for
from tests.support.imports import allow, make_people

Conn = psycopg.Connection[Any]


ROWS = 100_000  # 2.5 MB: more than the first batch (1 MiB), which no signal holds


def _import(dsn: str, tmp_path: Path, options: str) -> Any:
    source = tmp_path / "in.csv"
    source.write_text("name\n" + "".join(f"person-{i:08d}-abcdefgh\n" for i in range(ROWS)))
    return CliRunner().invoke(main, ["--dsn", dsn, "--storage", f"file://{tmp_path}/store",
                                     "import", "people", str(source), "--scope", "1",
                                     "--options", options])


def test_an_import_held_by_a_signal_says_so_and_what_it_waited_on(
        conn: Conn, dsn: str, make_conn: Callable[..., Conn], tmp_path: Path) -> None:
    make_people(conn)
    allow(conn, f"file://{tmp_path}")
    idle = old_transaction(conn, make_conn)
    seen = threading.Event()

    def end_once_held() -> None:
        watcher = make_conn()
        try:
            wait_for(lambda: scalar(watcher, "SELECT bool_or(checkpoint ? 'throttled')"
                                             " FROM pgjobs.jobs WHERE kind = 'import'"),
                     timeout=60, what="the import held")
            seen.set()
        finally:
            idle.rollback()

    ender = threading.Thread(target=end_once_held, daemon=True)
    ender.start()
    result = _import(dsn, tmp_path, '{"max_xact_age": "1 second"}')
    ender.join(timeout=60)
    assert seen.is_set()
    assert result.exit_code == 0, result.output
    assert scalar(conn, "SELECT count(*) FROM people WHERE tenant = 1") == ROWS
    job_id = scalar(conn, "SELECT max(id) FROM pgjobs.jobs WHERE kind = 'import'")
    held = [line for line in result.stderr.splitlines() if " held: " in line]
    # Said once, as the spell started, with its reason and what ends it.
    assert len(held) == 1, result.stderr
    assert held[0].startswith(f"job {job_id} held: oldest transaction open for ")
    assert "(max_xact_age 1 second); it goes on by itself" in held[0]
    waited = [line for line in result.stderr.splitlines() if "waited:" in line]
    assert len(waited) == 1, result.stderr
    assert waited[0].startswith(f"job {job_id} waited: held ")
    assert " in 1 spell: oldest transaction open for " in waited[0]
    assert waited[0].endswith("(max_xact_age 1 second)")


def test_an_import_nothing_held_says_nothing_of_waits(conn: Conn, dsn: str,
                                                      tmp_path: Path) -> None:
    make_people(conn)
    allow(conn, f"file://{tmp_path}")
    result = _import(dsn, tmp_path, "{}")
    assert result.exit_code == 0, result.output
    assert " held: " not in result.stderr and "waited:" not in result.stderr
