"""Every command that takes a JOB says the same about a job that does not exist:
one line, P0002, exit 1, and one hint (pgjobs.cli.common.unknown_job), whether the
command read the job itself (status, watch, url) or a SQL verb refused the id
(cancel, pause, resume, retry: their SQL hint is worded for SQL callers). The
commands are found by walking the click tree, so a new command taking a JOB is
covered without being listed here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs import db
from pgjobs.cli.common import UNKNOWN_JOB_HINT, JobId, job_verb, require_job
from pgjobs.cli.main import main
from pgjobs.errors import NotFound
from tests.support import make_target, submit

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def _no_ambient_database(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGJOBS_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


def _job_commands(group: click.Group = main, path: tuple[str, ...] = ()) -> Iterator[
        tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _job_commands(command, (*path, name))
        elif any(isinstance(p.type, JobId) for p in command.params
                 if isinstance(p, click.Argument)):
            yield (*path, name)


JOB_COMMANDS = sorted(_job_commands())
EXTRA = {("watch",): ["--timeout", "2"]}  # no wait for a job that is there


def test_the_walk_finds_every_job_command() -> None:
    """A walk that found nothing would make every test below vacuous."""
    assert {("status",), ("cancel",), ("pause",), ("resume",), ("retry",), ("watch",),
            ("url",)} <= set(JOB_COMMANDS), JOB_COMMANDS


@pytest.fixture
def cli(dsn: str, conn: Conn) -> Callable[..., Result]:
    make_target(conn)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--dsn", dsn, *args])
    return invoke


def _expect_unknown(result: Result, job_id: int) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: job {job_id} does not exist [P0002] (hint: {UNKNOWN_JOB_HINT})"], result.stderr


@pytest.mark.parametrize("command", JOB_COMMANDS, ids=" ".join)
def test_a_job_that_never_was(command: tuple[str, ...], cli: Callable[..., Result]) -> None:
    _expect_unknown(cli(*command, "987654321", *EXTRA.get(command, [])), 987654321)


@pytest.mark.parametrize("command", JOB_COMMANDS, ids=" ".join)
def test_a_pruned_job(command: tuple[str, ...], cli: Callable[..., Result], conn: Conn) -> None:
    """A job that existed and was deleted (prune): the same line as any unknown id."""
    job_id = submit(conn)
    conn.execute("DELETE FROM pgjobs.jobs WHERE id = %s", (job_id,))
    _expect_unknown(cli(*command, str(job_id), *EXTRA.get(command, [])), job_id)


@pytest.mark.parametrize("job_id", [1, 2**63 - 1])
def test_the_largest_and_smallest_ids(job_id: int, cli: Callable[..., Result]) -> None:
    _expect_unknown(cli("cancel", str(job_id)), job_id)
    _expect_unknown(cli("status", str(job_id)), job_id)


def test_a_job_gone_between_the_verb_and_the_read_back(dsn: str, conn: Conn) -> None:
    """cancel (or pause ...) changed the job, then it was pruned before the command
    read it back: the unknown job's error, not an AssertionError's traceback."""
    make_target(conn)
    job_id = submit(conn)

    def verb_then_prune(c: Conn, i: int) -> bool:
        changed = db.cancel(c, i)
        c.execute("DELETE FROM pgjobs.jobs WHERE id = %s", (i,))
        return changed

    with db.connect(dsn) as c:
        with pytest.raises(NotFound) as caught:
            job_verb(c, job_id, verb_then_prune)
        assert str(caught.value) == str(NotFound(
            f"job {job_id} does not exist", hint=UNKNOWN_JOB_HINT))
        with pytest.raises(NotFound):
            require_job(c, job_id)
