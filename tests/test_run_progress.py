"""`pgjobs run` (one-shot and --loop) shows a job's progress while a CALL
pgjobs.run works it. It printed its lines only when the CALL ended, so an
operator watching a long budget saw nothing for its whole length. A thread
of each runner now reads, on a connection of its own and once a second while
the CALL runs, the jobs that CALL holds (queries.RUN_PROGRESS), and prints
`job N delete progress: done/total rows (pct)` whenever the done count moved;
the lines after the CALL (succeeded, handed back, waited) and the exit codes
are as before.

Nothing here is timed: the CALL cannot end before the test sees a progress
line, because a trigger on the target holds the delete of its last due row
until the test opens a gate, which it does only once that line came."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.support import Target, job, make_rows_target, scalar, seed, submit_delete, wait_for
from tests.support.cli import cli_env, pgjobs_command

Conn = psycopg.Connection[Any]


class Run:
    """`pgjobs run ...` in a subprocess, its stderr gathered line by line as it comes."""

    def __init__(self, dsn: str, *args: str) -> None:
        self.proc = subprocess.Popen([*pgjobs_command(), "--dsn", dsn, "run", *args],
                                     env=cli_env(), text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, what: str) -> str:
        def found() -> str | None:
            return next((line for line in list(self.lines) if re.search(pattern, line)), None)
        return wait_for(found, timeout=120, what=f"{what}; stderr so far: {self.lines}")

    def end(self, interrupt: bool) -> tuple[int, str]:
        if interrupt and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            stdout, _ = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, _ = self.proc.communicate()
        self._reader.join(timeout=10)
        return self.proc.returncode, stdout


@contextmanager
def running(dsn: str, *args: str) -> Iterator[Run]:
    run = Run(dsn, *args)
    try:
        yield run
    finally:
        run.end(interrupt=True)


@pytest.fixture
def gated(conn: Conn) -> tuple[Target, int]:
    """The rows target, and a key of scope 1 whose delete waits (in a BEFORE
    DELETE trigger, polling, so no lock_timeout hands the page back) until a
    row is in public.gate: the last due key, so pages before it commit."""
    target = make_rows_target(conn)
    seed(conn, target, 900)
    last = int(scalar(conn, "SELECT max(id) FROM user_table_rows WHERE table_id = 1"
                            " AND created_at <= now()"))
    conn.execute("CREATE TABLE public.gate (opened boolean)")
    conn.execute(f"""
        CREATE FUNCTION public.wait_at_gate() RETURNS trigger LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            IF OLD.id = {last} THEN
                -- At most 5 minutes: a test that failed first leaves no CALL behind.
                FOR i IN 1 .. 6000 LOOP
                    EXIT WHEN EXISTS (SELECT FROM public.gate);
                    PERFORM pg_sleep(0.05);
                END LOOP;
            END IF;
            RETURN OLD;
        END $$""")
    conn.execute("CREATE TRIGGER wait_at_gate BEFORE DELETE ON user_table_rows"
                  " FOR EACH ROW EXECUTE FUNCTION public.wait_at_gate()")
    return target, last


def due(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1"
                            " AND created_at <= now()"))


@pytest.mark.parametrize("loop", [False, True], ids=["one-shot", "loop"])
def test_progress_lines_come_while_the_call_runs(conn: Conn, dsn: str,
                                                 gated: tuple[Target, int], loop: bool) -> None:
    target, _ = gated
    want = due(conn)
    job_id = submit_delete(conn, target, "1", options={"page_size": 10})
    args = ("--budget", "10m", *(("--loop", "--idle", "0.2") if loop else ()))
    with running(dsn, *args) as run:
        line = run.wait_line(rf"^job {job_id} delete progress: ", "a progress line")
        # The CALL is still at work: it waits at the gate, in the trigger.
        assert run.proc.poll() is None, run.lines
        assert job(conn, job_id)["status"] == "running"
        assert scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                            " 'pgjobs run' AND state = 'active'") == 1
        found = re.fullmatch(rf"job {job_id} delete progress: (\d+)/{want} rows \((\d+)%\)", line)
        assert found and 0 < int(found[1]) < want, line
        conn.execute("INSERT INTO public.gate VALUES (true)")
        run.wait_line(rf"^job {job_id} delete succeeded", "the succeeded line")
        code, stdout = run.end(interrupt=loop)
    assert code == (130 if loop else 0) and stdout == "", (code, run.lines)
    mine = [line for line in run.lines if line.startswith(f"job {job_id} ")]
    assert mine[0] == f"job {job_id} started: a delete job", mine
    assert mine[-1] == f"job {job_id} delete succeeded: {want}/{want} rows (100%)", mine
    progress = mine[1:-1]
    assert progress and all(p.startswith(f"job {job_id} delete progress: ") for p in progress)
    done = [int(p.split(": ")[1].split("/")[0]) for p in progress]
    assert done == sorted(set(done)), progress  # each line moved on from the last
    assert job(conn, job_id)["status"] == "succeeded" and due(conn) == 0


def test_with_runners_each_progress_line_names_its_runner(conn: Conn, dsn: str,
                                                          gated: tuple[Target, int]) -> None:
    target, _ = gated
    job_id = submit_delete(conn, target, "1", options={"page_size": 10})
    with running(dsn, "--budget", "10m", "--runners", "2") as run:
        line = run.wait_line(rf"job {job_id} delete progress: ", "a progress line")
        assert re.fullmatch(rf"runner [12]: job {job_id} delete progress: \d+/\d+ rows "
                            r"\(\d+%\)", line), line
        conn.execute("INSERT INTO public.gate VALUES (true)")
        run.wait_line(rf"job {job_id} delete succeeded", "the succeeded line")
        code, _ = run.end(interrupt=False)
    assert code == 0, run.lines
    assert job(conn, job_id)["status"] == "succeeded"


# --- a look that cannot finish ----------------------------------------------------------
# The look runs on its own session; the CALL must never wait for it. Made
# to hang by the test (RUN_PROGRESS wrapped in a gate the look cannot pass
# until the test opens it): waiting for a lock the test holds (lock_timeout
# ends that one) or busy on the server (no lock: only the runner's own
# handling ends it). The runner's stop timeout is made longer than any
# wait here, so a CALL's end that waited for its look would hang the test.

HANGS = {
    "lock": "PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242);",
    "slow": "FOR i IN 1 .. 6000 LOOP EXIT WHEN EXISTS (SELECT FROM public.look_open);"
            " PERFORM pg_sleep(0.05); END LOOP;",
}


@pytest.mark.parametrize("loop", [False, True], ids=["one-shot", "loop"])
@pytest.mark.parametrize("hang", list(HANGS))
def test_a_look_that_hangs_never_holds_up_the_runner(
        conn: Conn, dsn: str, make_conn: Any, gated: tuple[Target, int],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        hang: str, loop: bool) -> None:
    from cli import runners
    from pgjobs import db, queries

    target, _ = gated
    want = due(conn)
    conn.execute("CREATE TABLE public.look_open (opened boolean)")
    conn.execute(f"""
        CREATE FUNCTION public.look_gate() RETURNS boolean LANGUAGE plpgsql
        SET search_path = pg_catalog, pg_temp AS $$
        BEGIN {HANGS[hang]} RETURN true; END $$""")
    monkeypatch.setattr(queries, "RUN_PROGRESS",
                        f"SELECT * FROM ({queries.RUN_PROGRESS}) p WHERE public.look_gate()")
    monkeypatch.setattr(runners, "STOP_SECONDS", 3600.0)
    holder = make_conn()
    holder.execute("SELECT pg_advisory_lock(4242)")  # the lock the "lock" look waits for
    job_id = submit_delete(conn, target, "1", options={"page_size": 10})
    stop = threading.Event()
    raised: list[BaseException] = []

    def runner() -> None:
        try:
            runners.run_loop(lambda app: db.connect(dsn, app=app), "10m", loop, 0.2,
                             stop=stop, report=runners.RunReport(1))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            raised.append(exc)

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    try:
        # A look is stuck in its gate while the CALL is at work in its own.
        wait_for(lambda: scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE "
                                      "application_name = 'pgjobs run progress' AND "
                                      "query LIKE '%look_gate%' AND state = 'active'") == 1,
                 timeout=120, what="a look stuck in its gate")
        conn.execute("INSERT INTO public.gate VALUES (true)")
        wait_for(lambda: job(conn, job_id)["status"] == "succeeded", timeout=120,
                 what="the CALL's job")
        stop.set()
        thread.join(timeout=120)
        assert not thread.is_alive(), "the runner waited for its look"
        assert raised == []
        err = capsys.readouterr().err.splitlines()
        mine = [line for line in err if line.startswith(f"job {job_id} ")]
        assert mine[0] == f"job {job_id} started: a delete job", err
        assert mine[-1] == f"job {job_id} delete succeeded: {want}/{want} rows (100%)", err
    finally:
        stop.set()
        conn.execute("INSERT INTO public.look_open VALUES (true)")
        holder.execute("SELECT pg_advisory_unlock(4242)")
        thread.join(timeout=120)
    assert due(conn) == 0
