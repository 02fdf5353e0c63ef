"""Adversarial checks of issue 10's operator features (reviewer r1): the
typo guard, preview, pause/resume/retry, throttling and the CLI guards, tried
the way an attacker or a new user would. Each test names the weakness it
pins down."""

from __future__ import annotations

from typing import Any

import click
import psycopg
import pytest

from pgjobs.cli.common import OPERANDS
from pgjobs.cli.main import main
from tests.support import job, make_rows_target, scalar, seed, submit_delete, wait_for

Conn = psycopg.Connection[Any]


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Any:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, (*path, name))


# --- CLI: what a job does never comes from a leftover variable ----------------

# Options that decide which rows a job changes or how: a variable left in a
# shell must not steer them. `import --on-duplicate update` overwrites existing
# rows; `--max-rejects` silently drops bad records instead of failing;
# `--options` carries allow_unknown_fields and the like.
STEERING = {"on_duplicate", "max_rejects", "extra"}


def test_no_steering_option_of_any_command_reads_the_environment() -> None:
    assert STEERING <= OPERANDS
    seen = set()
    for path, command in walk(main):
        for param in command.params:
            if param.name in OPERANDS:
                assert not param.envvar, f"pgjobs {' '.join(path)} {param.name}: {param.envvar}"
                seen.add(param.name)
    assert seen >= STEERING


def test_import_ignores_leftover_steering_variables(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Any) -> None:
    # Parsed without a database: the variables must not reach the options.
    for name, value in {"PGJOBS_ON_DUPLICATE": "update", "PGJOBS_MAX_REJECTS": "1000",
                        "PGJOBS_OPTIONS": "{not json"}.items():
        monkeypatch.setenv(name, value)
    command = main.commands["import"]
    ctx = command.make_context("import", ["t", str(tmp_path / "x.csv"), "--scope", "1"])
    assert ctx.params["on_duplicate"] is None
    assert ctx.params["max_rejects"] is None
    assert ctx.params["extra"] is None


# --- throttling: a slow job does not hold a runner that has other work -------


@pytest.mark.parametrize("limit", [{"page_delay": "1 hour"}, {"max_rows_per_second": 1}])
def test_a_rate_limited_job_is_handed_back_while_others_wait(conn: Conn,
                                                             limit: dict[str, Any]) -> None:
    """Anyone who may submit picks their own page_delay (up to an hour) and
    max_rows_per_second (down to 1). A runner that slept through its whole
    budget on such a job would let one client's slow jobs hold every runner:
    other scopes' jobs waited a budget per slow job. The runner hands the job
    back, due when its next page may start, and works on the others."""
    target = make_rows_target(conn)
    seed(conn, target, 300)
    slow = submit_delete(conn, target, "1", options={"page_size": 5, **limit})
    fast = submit_delete(conn, target, "2", {"k": 0})
    conn.execute("CALL pgjobs.run('3 seconds')")
    assert job(conn, fast)["status"] == "succeeded"
    slow_job = job(conn, slow)
    assert slow_job["status"] == "queued" and slow_job["attempts"] == 0
    assert slow_job["done"] > 0  # its first page ran
    # Due when its next page may start, not now: no runner spins on it.
    assert scalar(conn, "SELECT run_at > now() FROM pgjobs.jobs WHERE id = %s", (slow,))


def test_a_rate_limited_job_alone_keeps_its_runner(conn: Conn) -> None:
    """With nothing else due, the runner keeps pacing the job itself (it would
    otherwise wait for the next scheduled run)."""
    target = make_rows_target(conn)
    seed(conn, target, 300)
    slow = submit_delete(conn, target, "1", options={"page_size": 5, "page_delay": "1 s"})
    conn.execute("CALL pgjobs.run('2500 milliseconds')")
    assert job(conn, slow)["done"] >= 10  # at least two pages, one runner


# --- retry: a resubmission keeps the job's on_conflict ------------------------


def test_retry_of_a_reject_job_refuses_while_a_writer_is_pending(conn: Conn) -> None:
    """A job submitted with {"on_conflict": "reject"} must never queue behind
    another writer of its scope; its retry is a resubmission and refuses the
    same way (55006), leaving the job as it was."""
    target = make_rows_target(conn)
    seed(conn, target, 60)
    first = submit_delete(conn, target, "1", {"k": 0}, options={"on_conflict": "reject"})
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (first,))
    other = submit_delete(conn, target, "1", {"k": 1})
    with pytest.raises(psycopg.errors.ObjectInUse) as info:
        conn.execute("SELECT pgjobs.retry(%s)", (first,))
    assert info.value.diag.message_hint
    assert job(conn, first)["status"] == "canceled"
    # Once the scope is free, the retry goes through.
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (other,))
    assert scalar(conn, "SELECT pgjobs.retry(%s)", (first,))
    assert job(conn, first)["status"] == "queued"


# --- CLI: a paused import in the foreground says so, and goes on when resumed --


def test_foreground_import_says_it_is_paused_and_goes_on(
        conn: Conn, dsn: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from pgjobs.cli.common import Context
    from pgjobs.cli.importing import _Display, _run_here
    from tests.support import allow, make_people, submit_import

    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    (folder / "a.csv").write_text("id,name\n1,ann\n")
    job_id = submit_import(conn, f"file://{folder}/a.csv")
    assert scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
    box: list[int] = []
    thread = threading.Thread(target=lambda: box.append(
        _run_here(Context(dsn, f"file://{folder}/store"), job_id, _Display(job_id), False)),
        daemon=True)
    thread.start()
    # Until the note, not for a fixed 5 s: on a loaded machine the thread's
    # connection and first look at the job alone took longer.
    said: list[str] = []
    wait_for(lambda: said.append(capsys.readouterr().err) or "is paused" in "".join(said),
             what="the paused note")
    assert f"job {job_id} is paused: `pgjobs resume {job_id}`" in "".join(said)
    assert scalar(conn, "SELECT pgjobs.resume(%s)", (job_id,))
    thread.join(30)
    assert box == [0] and job(conn, job_id)["status"] == "succeeded"
