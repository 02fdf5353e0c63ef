"""Every error line of the command line names a SQLSTATE and a hint, whichever
side refused: the database (its own code), or the command line itself (an
unknown option, a bad duration, a malformed --filter: 22023; a verb that does
not apply to a finished job: 55000). And a command never reports success for
something it did not do: `run --budget 0s` claimed nothing yet exited 0.

Found in the hX operator pass: `pgjobs cancel` of a succeeded job printed
`error: ... nothing to cancel (hint: ...)` with no code, every click usage
error and every duration refusal had none either, and `pgjobs run --budget
0s` (as `CALL pgjobs.run('0')`) returned at once, exit 0, a queued job left
untouched.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs import errors
from pgjobs.cli.main import main
from tests.support import claim, job, make_rows_target, make_target, scalar, seed, submit, who
from tests.support.cli import unset_ambient_settings
from tests.test_cli_usage import COMMANDS

Conn = psycopg.Connection[Any]

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
CODED = re.compile(r"^error: .+ \[[0-9A-Z]{5}\] \(hint: .+\)$")


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


def coded_line(result: Result, code: int, sqlstate: str, *fragments: str) -> str:
    """Exit `code`, one line on stderr: `error: MESSAGE [SQLSTATE] (hint: ...)`."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert CODED.match(lines[0]), lines[0]
    assert f"[{sqlstate}]" in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def offline(*args: str) -> Result:
    """Refused before any connection (the DSN answers nothing)."""
    return CliRunner().invoke(main, ["--dsn", UNREACHABLE, *args])


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_usage_error_names_22023(path: tuple[str, ...]) -> None:
    coded_line(offline(*path, "--no-such-option-h"), 2, "22023", "--no-such-option-h")


@pytest.mark.parametrize("args", [
    ("run", "--budget", "-5s"), ("run", "--budget", "soon"), ("run", "--idle", "-1s"),
    ("prune", "--retention", "-1h"), ("prune", "--retention", "1 fortnight"),
    ("watch", "1", "--timeout", "-3s"), ("worker", "--lease", "0x"),
    ("delete", "t", "--scope", "1", "--filter", "{bad", "--yes"),
    ("delete", "t", "--scope", "1", "--options", "[]", "--yes"),
    ("backfill", "t", "--scope", "1", "--filter", "{}", "--set", "[1]", "--yes"),
], ids=" ".join)
def test_arguments_the_command_line_refuses_name_22023(args: tuple[str, ...]) -> None:
    coded_line(offline(*args), 2, "22023")


@pytest.mark.parametrize("budget", ["0", "0s", "0ms", "0.0", "0 seconds", "0:00", "0 days"])
def test_run_with_no_budget_is_refused_not_a_silent_exit_0(budget: str) -> None:
    coded_line(offline("run", "--budget", budget), 2, "22023", "--budget", "more than 0")


def test_run_over_a_day_is_refused_before_connecting() -> None:
    coded_line(offline("run", "--budget", "2d"), 2, "22023", "--budget")


def test_a_run_of_no_time_is_refused_in_sql_too(conn: Conn) -> None:
    make_target(conn)
    queued = submit(conn)
    for budget in ("0", "-1 second", "25 hours"):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
            conn.execute("CALL pgjobs.run(%s::interval)", (budget,))
        assert info.value.diag.message_hint, budget
    assert job(conn, queued)["status"] == "queued"


def test_run_with_a_budget_still_runs(conn: Conn, dsn: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    queued = scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')")
    result = CliRunner().invoke(main, ["--dsn", dsn, "run", "--budget", "30s"])
    assert result.exit_code == 0, result.output
    assert job(conn, queued)["status"] == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                        "AND created_at <= now() - interval '1 minute'") == 0


def test_cancel_of_a_finished_job_names_55000(conn: Conn, dsn: str) -> None:
    make_target(conn)
    done, failed = submit(conn), submit(conn)
    assert claim(conn, "w", limit=2) == [done, failed]
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (done, who(conn, done, "w")))
    assert scalar(conn, "SELECT pgjobs.fail(%s, %s, 'boom', false)",
                  (failed, who(conn, failed, "w")))
    for job_id, status in ((done, "succeeded"), (failed, "failed")):
        result = CliRunner().invoke(main, ["--dsn", dsn, "cancel", str(job_id)])
        coded_line(result, 1, "55000", f"job {job_id} had already finished ({status})")
        assert job(conn, job_id)["status"] == status


@pytest.mark.parametrize("verb", ["cancel", "pause", "resume", "retry", "status"])
def test_an_unknown_job_names_p0002(dsn: str, verb: str) -> None:
    coded_line(CliRunner().invoke(main, ["--dsn", dsn, verb, "987654"]), 1, "P0002")


def test_an_error_raised_in_python_carries_its_class_sqlstate() -> None:
    """The class an SQLSTATE maps to gives that code to an error pgjobs raises itself:
    `cancel`'s NotReady reads [55000] as the database's 55000 does."""
    seen: set[type[errors.PgjobsError]] = set()
    for code, cls in errors._BY_SQLSTATE.items():
        made = cls("message")
        assert made.sqlstate is not None, cls
        assert errors._BY_SQLSTATE[made.sqlstate] is cls, (code, cls)
        assert f"[{made.sqlstate}]" in str(made)
        seen.add(cls)
    assert errors.InvalidInput("x", sqlstate="22P02").sqlstate == "22P02"  # the database's wins
    assert len(seen) >= 6




def _subclasses(cls: type[errors.PgjobsError]) -> list[type[errors.PgjobsError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_error_class_names_a_sqlstate() -> None:
    """The class, not the cases: an error pgjobs raises itself without a code
    (InvalidDsn, ConnectionFailed, ConnectionLost and the embedded cluster's
    EmbeddedError had none) still prints one."""
    import pgjobs.embedded  # noqa: F401  (EmbeddedError subclasses PgjobsError there)
    import pgjobs.poller.storage  # noqa: F401  (StorageError)

    classes = _subclasses(errors.PgjobsError)
    assert {errors.InvalidDsn, errors.ConnectionFailed, errors.ConnectionLost,
            errors.NoDatabase} <= set(classes)
    for cls in classes:
        try:
            made = cls("message")
        except TypeError:  # StorageError: retryable is required
            made = cls("message", retryable=False)  # type: ignore[call-arg]
        assert made.sqlstate is not None and re.fullmatch(r"[0-9A-Z]{5}", made.sqlstate), cls


@pytest.mark.parametrize("dsn, code, sqlstate", [
    ("notadsn", 2, "22023"),
    ("postgresql://x@127.0.0.1:5432/db?no_such_parameter=1", 2, "22023"),
    (UNREACHABLE, 1, "08001"),
    ("postgresql://nobody@no-such-host.invalid/none?connect_timeout=2", 1, "08001"),
])
def test_a_dsn_that_fails_names_a_sqlstate(dsn: str, code: int, sqlstate: str) -> None:
    coded_line(CliRunner().invoke(main, ["--dsn", dsn, "list"]), code, sqlstate, "--dsn")


@pytest.mark.parametrize("which", ["database", "role"])
def test_a_database_or_role_that_does_not_exist_names_08001(dsn: str, which: str) -> None:
    key = "dbname" if which == "database" else "user"
    if "://" in dsn:
        sep = "&" if "?" in dsn else "?"
        wrong = f"{dsn}{sep}{key}=no_such_{which}_h20"
    else:
        wrong = f"{dsn} {key}=no_such_{which}_h20"  # the later key wins
    coded_line(CliRunner().invoke(main, ["--dsn", wrong, "list"]), 1, "08001",
               "do that database and role exist")


def test_no_database_at_all_names_08001(tmp_path: Any) -> None:
    result = CliRunner().invoke(main, ["list"], env={"PGJOBS_HOME": str(tmp_path)})
    coded_line(result, 2, "08001", "pgjobs dev up")
