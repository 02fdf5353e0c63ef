"""`pgjobs run` (one-shot and --loop) says what it does with each job (issue
11). It printed nothing: an operator watching `pgjobs run --loop` saw no job
start, end, fail or wait, and a job held by a throttling signal looked like a
hang. Each runner now reads, once after each CALL pgjobs.run, the jobs its own
session claimed and changed since its previous look (queries.RUN_SEEN), and
prints on stderr one line per event: started (or resumed), held (once a spell,
with the reason), handed back at its budget's end (done/total in the kind's
unit), retried, finished (a failure with its error's first line), then what it
waited on (pgjobs.cli.progress.Waits). --quiet keeps the old silence; with
--runners N each line names its runner.

Lines and events are counted, never timed: a hand-back is forced by pages that
take longer than the budget (page_delay), a hold by an old open transaction
(max_xact_age) that ends only once the output says the job is held."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs import db, queries
from pgjobs.cli.main import main
from tests.support import (
    Target,
    job,
    make_rows_target,
    old_transaction,
    scalar,
    seed,
    submit_delete,
    wait_for,
)
from tests.support.cli import cli_env, pgjobs_command

Conn = psycopg.Connection[Any]


class Loop:
    """`pgjobs run --loop ...` in a subprocess, its stderr gathered line by
    line as it comes (a thread reads it), stopped with SIGINT (Ctrl-C)."""

    def __init__(self, dsn: str, *args: str) -> None:
        command = pgjobs_command()
        env = cli_env()
        self.proc = subprocess.Popen([*command, "--dsn", dsn, "run", "--loop", "--idle", "0.2",
                                      *args], env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stdout = ""

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, what: str, timeout: float = 120) -> str:
        """The first line matching ``pattern`` (a regex, searched), once it came."""
        def found() -> str | None:
            return next((line for line in list(self.lines) if re.search(pattern, line)), None)
        return wait_for(found, timeout=timeout, what=f"{what}; stderr so far: {self.lines}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.stdout, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.stdout, _ = self.proc.communicate()
        self._reader.join(timeout=10)

    def matching(self, pattern: str) -> list[str]:
        return [line for line in self.lines if re.search(pattern, line)]


@contextmanager
def loop(dsn: str, *args: str) -> Iterator[Loop]:
    running = Loop(dsn, *args)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def target(conn: Conn) -> Target:
    t = make_rows_target(conn)
    seed(conn, t, 900)  # 300 rows in each of scopes 1..3
    return t


def due(conn: Conn, scope: str) -> int:
    """The rows a delete of ``scope`` takes: seed() makes every 23rd row in the
    future, after the job's cutoff."""
    return int(scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = %s"
                            " AND created_at <= now()", (int(scope),)))


def test_a_loop_says_a_small_delete_started_and_succeeded(conn: Conn, dsn: str,
                                                          target: Target) -> None:
    want = due(conn, "1")
    job_id = submit_delete(conn, target, "1")
    with loop(dsn) as running:
        running.wait_line(rf"^job {job_id} delete succeeded", "the succeeded line")
    assert running.matching(rf"^job {job_id} ") == [
        f"job {job_id} started: a delete job",
        f"job {job_id} delete succeeded: {want}/{want} rows (100%)",
    ], running.lines
    assert running.stdout == ""  # stdout stays the data's (run has none)
    assert job(conn, job_id)["status"] == "succeeded" and due(conn, "1") == 0


def test_a_job_longer_than_the_budget_is_said_handed_back_with_its_progress(
        conn: Conn, dsn: str, target: Target) -> None:
    # 29 pages with 100 ms between them: more than a 1 s budget, whatever the load.
    want = due(conn, "2")
    job_id = submit_delete(conn, target, "2", options={"page_size": 10, "page_delay": "100ms"})
    with loop(dsn, "--budget", "1s") as running:
        running.wait_line(rf"^job {job_id} delete succeeded", "the succeeded line")
    back = running.matching(rf"^job {job_id} delete handed back")
    assert back, running.lines
    for line in back:
        found = re.fullmatch(rf"job {job_id} delete handed back at its budget's end: "
                             rf"(\d+)/{want} rows \((\d+)%\); the next run resumes it from its "
                             "checkpoint", line)
        assert found and int(found[1]) < want, line
    done = [int(line.split(": ")[1].split("/")[0]) for line in back]
    assert done == sorted(done), back  # each budget goes on from the last
    assert len(running.matching(rf"^job {job_id} started: ")) == 1, running.lines
    waited = running.matching(rf"^job {job_id} waited: ")
    assert waited == [f"job {job_id} waited: changed hands {len(back)} time"
                      f"{'s' if len(back) != 1 else ''} (handed back at a budget's end, or "
                      "its lease lost), resumed from its checkpoint"], running.lines
    # The end comes last, after every hand-back.
    ends = [i for i, line in enumerate(running.lines) if line.startswith(f"job {job_id} ")]
    assert running.lines[ends[-2]] == f"job {job_id} delete succeeded: {want}/{want} rows (100%)"
    assert due(conn, "2") == 0


def test_a_failing_job_says_its_retry_and_its_error_on_one_safe_line(
        conn: Conn, dsn: str, target: Target) -> None:
    conn.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION USING ERRCODE = '53000',
                MESSAGE = E'disk full\\x1b[2J here\\nsecond line';
        END $$;
        CREATE TRIGGER refuse BEFORE DELETE ON user_table_rows
            FOR EACH ROW EXECUTE FUNCTION refuse()""")
    job_id = submit_delete(conn, target, "3", options={"max_attempts": 2})
    with loop(dsn) as running:
        running.wait_line(rf"^job {job_id} delete failed", "the failed line")
    lines = running.matching(rf"^job {job_id} ")
    assert lines[0] == f"job {job_id} started: a delete job", lines
    assert re.fullmatch(rf"job {job_id} delete attempt 1 of 2 failed at 0/(\d+|\?) rows( \(0%\))?, "
                        r"retried from its checkpoint at \S+T\S+: .*disk full\\x1b\[2J here",
                        lines[1]), lines
    assert re.fullmatch(rf"job {job_id} delete failed at 0/(\d+|\?) rows( \(0%\))?: "
                        r".*disk full\\x1b\[2J here", lines[2]), lines
    # The retry is among what it waited on; no line carries the escape or the
    # second line.
    assert f"job {job_id} waited: retried 1 time from its checkpoint after a failed attempt" \
        in lines[3:], lines
    assert all(line.startswith(f"job {job_id} waited: ") for line in lines[3:]), lines
    assert not [line for line in running.lines if "\x1b" in line or "second line" in line]
    assert job(conn, job_id)["status"] == "failed"


def test_a_held_job_is_said_held_once_a_spell_and_what_it_waited_on_at_its_end(
        conn: Conn, dsn: str, make_conn: Callable[..., Conn], target: Target) -> None:
    want = due(conn, "2")
    job_id = submit_delete(conn, target, "2",
                           options={"max_xact_age": "1 second", "page_size": 20})
    idle = old_transaction(conn, make_conn)
    with loop(dsn, "--budget", "2s") as running:
        try:
            held = running.wait_line(rf"^job {job_id} held: ", "the held line")
        finally:
            idle.rollback()  # the spell ends only once the output said it began
        running.wait_line(rf"^job {job_id} waited: ", "the waited line")
    assert held.startswith(f"job {job_id} held: oldest transaction open for "), held
    assert held.endswith("(max_xact_age 1 second); it goes on by itself once that is back "
                         "under its limit"), held
    assert len(running.matching(rf"^job {job_id} held: ")) == 1, running.lines
    assert running.matching(rf"^job {job_id} delete succeeded: {want}/{want} rows")
    waited = running.matching(rf"^job {job_id} waited: held ")
    assert len(waited) == 1, running.lines
    assert " in 1 spell: oldest transaction open for " in waited[0], waited
    assert waited[0].endswith("(max_xact_age 1 second)"), waited
    # Held through a budget's end: handed back, said after the hold.
    assert running.lines.index(held) < running.lines.index(
        running.matching(rf"^job {job_id} delete handed back")[0]), running.lines


def test_quiet_says_nothing_of_jobs_and_reads_nothing_more(conn: Conn, dsn: str,
                                                           target: Target) -> None:
    job_id = submit_delete(conn, target, "1")
    with loop(dsn, "--quiet") as running:
        wait_for(lambda: job(conn, job_id)["status"] == "succeeded", timeout=120,
                 what="the job to succeed")
    assert not running.matching(r"^(runner \d+: )?job "), running.lines


def test_runners_name_the_runner_that_worked_each_job(conn: Conn, dsn: str,
                                                      target: Target) -> None:
    jobs = [submit_delete(conn, target, scope) for scope in ("1", "2", "3")]
    with loop(dsn, "--runners", "2") as running:
        for job_id in jobs:
            running.wait_line(rf"job {job_id} delete succeeded", f"job {job_id} succeeded")
    said = running.matching(r"job \d+ ")
    assert all(re.match(r"runner [12]: job \d+ ", line) for line in said), said
    for job_id in jobs:
        started = running.matching(rf"^runner [12]: job {job_id} started: a delete job$")
        ended = running.matching(rf"^runner [12]: job {job_id} delete succeeded: \d+/\d+ rows")
        assert len(started) == 1 and len(ended) == 1, said
        assert started[0][:8] == ended[0][:8], said  # one CALL, one runner


def test_a_one_shot_run_says_a_resumed_job_with_one_look_per_call(
        conn: Conn, dsn: str, make_conn: Callable[..., Conn], target: Target,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A job a run before this one started is said resumed; the one-shot run
    reads RUN_SEEN once, after its one CALL, and not at all with --quiet."""
    want = due(conn, "3")
    job_id = submit_delete(conn, target, "3", options={"page_size": 10, "page_delay": "100ms"})
    make_conn().execute("CALL pgjobs.run('1 second')")
    assert job(conn, job_id)["status"] == "queued" and job(conn, job_id)["done"] > 0
    looks: list[str] = []
    real = db.rows

    def rows(conn: Any, sql: str, params: dict[str, Any] | None = None) -> Any:
        if sql == queries.RUN_SEEN:
            looks.append(sql)
        return real(conn, sql, params)

    monkeypatch.setattr(db, "rows", rows)
    result = CliRunner().invoke(main, ["--dsn", dsn, "run", "--budget", "30s"])
    assert result.exit_code == 0, result.output
    assert len(looks) == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"job {job_id} ")]
    assert re.fullmatch(rf"job {job_id} resumed: a delete job started at \S+T\S+, taken up "
                        "from its checkpoint", lines[0]), lines
    # Its one hand this process saw: nothing it waited on here. While the CALL
    # ran, its progress (tests/test_run_progress.py) may come between: the
    # run's pages take over a second.
    moving = [line for line in lines[1:] if " progress: " in line]
    assert all(re.fullmatch(rf"job {job_id} delete progress: \d+/{want} rows \(\d+%\)", line)
               for line in moving), lines
    assert lines[1 + len(moving):] == [
        f"job {job_id} delete succeeded: {want}/{want} rows (100%)"], lines
    looks.clear()
    quiet = CliRunner().invoke(main, ["--dsn", dsn, "run", "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and looks == [], quiet.output


def test_no_text_of_a_job_row_prints_a_control_character(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The class behind the error's first line: a held reason, a backfill's
    skipped key and every `waited` line carry text others wrote (a role name,
    a key value); each line is printed with its control characters as their escapes
    (pgjobs.errors.printable, the one rule of the command line)."""
    from datetime import datetime, timezone

    from pgjobs.cli.runners import RunReport

    at = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    row = {"at": at, "since": at, "id": 9, "kind": "backfill", "done": 10, "total": 10,
           "attempts": 1, "max_attempts": 5, "error": None, "worker": "run:1#ab",
           "started_at": at, "run_at": at, "updated_at": at, "lock_waits": None}
    report = RunReport(1)
    report.saw(1, [{**row, "status": "queued", "done": 5, "result": None,
                    "throttled": {"reason": "held by \x1b[2Jrole\r\nx", "since": at.isoformat()}}])
    report.saw(1, [{**row, "status": "succeeded", "throttled": None,
                    "result": {"skipped": 1, "skipped_first": {"key": "k\x1b]0;\x07", "path": "a",
                                                               "type": "string"}}}])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\x1b" not in err and "\r" not in err and "\x07" not in err, err
    assert "job 9 held: held by \\x1b[2Jrole\\r; it goes on by itself" in lines[1], lines
    assert any("(first: key k\\x1b]0;\\x07, " in line for line in lines), lines
    assert any(line.startswith("job 9 waited: held ") and "held by \\x1b[2Jrole\\r\\nx" in line
               for line in lines), lines
