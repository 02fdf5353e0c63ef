"""Issue 15, the command line: what commands print.

- Every timestamp printed, in text and in --json, is ISO 8601 with a ``T``
  (status, list, watch, dev status, the submit commands' --json).
- --json on list (JSON lines), watch (JSON lines), dev status and the submit
  commands (delete, backfill, export --detach, import --detach: the job).
- `list` on a terminal: a header and each job's age; piped: the old lines.
- Progress always on stderr: ``JOB=$(pgjobs delete ... --wait)`` captures the
  id alone; --quiet prints nothing but the result, --no-progress drops the
  progress lines only.
- No ``succeeded: succeeded`` lines; sizes for people; rates from started_at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pexpect
import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from pgjobs.cli.output import human_age, human_bytes, iso, rows_per_second, to_json
from pgjobs.cli.progress import _as_event, _line
from tests.support import claim, make_rows_target, make_target, scalar, seed, submit, who
from tests.support.cli import cli_env, pgjobs_command, unset_ambient_settings

Conn = psycopg.Connection[Any]

ISO_T = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")
SPACED = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")
TIMESTAMP_KEYS = ("created_at", "started_at", "finished_at", "run_at", "lease_expires_at")


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


@pytest.fixture
def cli(dsn: str) -> Callable[..., Result]:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--dsn", dsn, *args])

    return invoke


@pytest.fixture
def rows(conn: Conn) -> Conn:
    seed(conn, make_rows_target(conn), 300)
    return conn


def running_job(conn: Conn) -> int:
    """A custom job claimed (started_at set) with progress and a lease."""
    make_target(conn)
    job_id = submit(conn)
    assert claim(conn, "w") == [job_id]
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 3)", (job_id, who(conn, job_id, "w")))
    return job_id


def assert_iso_timestamps(text: str, at_least: int = 1) -> None:
    assert not SPACED.search(text), text
    assert len(ISO_T.findall(text)) >= at_least, text


def assert_job_json(obj: dict[str, Any], job_id: int) -> None:
    assert obj["id"] == job_id
    for key in TIMESTAMP_KEYS:
        if obj.get(key) is not None:
            assert ISO_T.fullmatch(obj[key]), (key, obj[key])
    assert ISO_T.fullmatch(obj["created_at"])


# --- timestamps -----------------------------------------------------------------------


def test_iso_writes_every_nested_timestamp_with_a_t() -> None:
    when = datetime(2026, 11, 30, 11, 52, 57, 26401, tzinfo=timezone.utc)
    value = {"a": when, "b": [when, {"c": when.date()}], "d": 1, "e": None}
    assert iso(value) == {"a": "2026-11-30T11:52:57.026401+00:00",
                          "b": ["2026-11-30T11:52:57.026401+00:00", {"c": "2026-11-30"}],
                          "d": 1, "e": None}
    assert json.loads(to_json(value))["a"] == "2026-11-30T11:52:57.026401+00:00"


def test_status_text_and_json_print_iso_timestamps(cli: Callable[..., Result],
                                                   conn: Conn) -> None:
    job_id = running_job(conn)
    text = cli("status", str(job_id))
    assert text.exit_code == 3, text.output
    lines = dict(line.split(": ", 1) for line in text.stdout.splitlines())
    for key in ("created_at", "started_at", "run_at", "lease_expires_at"):
        assert ISO_T.fullmatch(lines[key]), (key, lines[key])
    assert_iso_timestamps(text.stdout, 4)

    as_json = cli("status", str(job_id), "--json")
    assert as_json.exit_code == 3
    assert_job_json(json.loads(as_json.stdout), job_id)
    assert_iso_timestamps(as_json.stdout, 4)


def test_list_json_lines_newest_first(cli: Callable[..., Result], conn: Conn) -> None:
    first = running_job(conn)
    second = submit(conn)
    result = cli("list", "--json")
    assert result.exit_code == 0, result.output
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["id"] for o in objects] == [second, first]
    for obj in objects:
        assert_job_json(obj, obj["id"])
    assert_iso_timestamps(result.stdout, 3)
    assert cli("list", "--json", "--status", "succeeded").stdout == ""


def test_list_piped_keeps_its_tab_separated_lines(cli: Callable[..., Result],
                                                  conn: Conn) -> None:
    job_id = running_job(conn)
    result = cli("list")
    assert result.stdout.splitlines() == [f"{job_id}\tcustom\titems\t1\trunning\t3/?"]


def test_watch_json_lines(cli: Callable[..., Result], conn: Conn) -> None:
    job_id = running_job(conn)
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, who(conn, job_id, "w")))
    result = cli("watch", str(job_id), "--json")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    event = json.loads(line)
    assert event["event"] == "succeeded" and event["status"] == "succeeded"
    assert event["done"] == 3 and event["note"] is None
    assert isinstance(event["rows_per_second"], float)
    assert_job_json(event, job_id)
    assert ISO_T.fullmatch(event["finished_at"])


def test_a_throttled_note_prints_its_time_with_a_t(cli: Callable[..., Result],
                                                   conn: Conn) -> None:
    job_id = running_job(conn)
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = jsonb_build_object('throttled',"
                 " jsonb_build_object('reason', 'replica lag', 'since', to_jsonb(now())))"
                 " WHERE id = %s", (job_id,))
    result = cli("watch", str(job_id), "--timeout", "0.5")
    assert result.exit_code == 3, result.output
    assert "throttled since " in result.stdout and "replica lag" in result.stdout
    assert_iso_timestamps(result.stdout)
    as_json = cli("watch", str(job_id), "--timeout", "0.5", "--json")
    event = json.loads(as_json.stdout.splitlines()[0])
    assert ISO_T.search(event["note"]) and not SPACED.search(as_json.stdout)


def test_dev_status_json(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["dev", "status", "--json", "--home", str(tmp_path)])
    assert result.exit_code == 3, result.output  # nothing runs there
    info = json.loads(result.stdout)
    assert info["running"] is False and info["home"] == str(tmp_path)
    assert not SPACED.search(result.stdout)


# --- the submit commands: data on stdout, progress on stderr -----------------------------


DELETE = ("delete", "user_table_rows", "--scope", "1", "--filter", '{"k": 3}')
BACKFILL = ("backfill", "user_table_rows", "--scope", "1", "--filter", '{"k": 3}',
            "--set", '{"n": 9}')


def newest_job(conn: Conn) -> int:
    return int(scalar(conn, "SELECT max(id) FROM pgjobs.jobs"))


@pytest.mark.parametrize("command", [DELETE, BACKFILL], ids=["delete", "backfill"])
def test_wait_prints_the_id_alone_on_stdout(cli: Callable[..., Result], rows: Conn,
                                            command: tuple[str, ...]) -> None:
    result = cli(*command, "--run")
    assert result.exit_code == 0, result.output
    job_id = newest_job(rows)
    assert result.stdout == f"{job_id}\n"
    err = result.stderr.splitlines()
    assert err[0] == f"job {job_id} submitted"
    assert err[-1].startswith(f"job {job_id} {command[0]} succeeded ")  # its progress
    assert not any("succeeded: succeeded" in line for line in err)


@pytest.mark.parametrize("command", [DELETE, BACKFILL], ids=["delete", "backfill"])
def test_quiet_and_no_progress(cli: Callable[..., Result], rows: Conn,
                               command: tuple[str, ...]) -> None:
    quiet = cli(*command, "--run", "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stdout == f"{newest_job(rows)}\n" and quiet.stderr == ""

    plain = cli(*command, "--run", "--no-progress")
    assert plain.exit_code == 0, plain.output
    job_id = newest_job(rows)
    assert plain.stdout == f"{job_id}\n"
    assert plain.stderr == f"job {job_id} submitted\n"

    detached = cli(*command, "-q")
    assert detached.stdout == f"{newest_job(rows)}\n" and detached.stderr == ""


@pytest.mark.parametrize("command", [DELETE, BACKFILL], ids=["delete", "backfill"])
@pytest.mark.parametrize("wait", [(), ("--run",)], ids=["submit", "run"])
def test_submit_json_prints_the_job(cli: Callable[..., Result], rows: Conn,
                                    command: tuple[str, ...], wait: tuple[str, ...]) -> None:
    result = cli(*command, *wait, "--json")
    assert result.exit_code == 0, result.output
    job_id = newest_job(rows)
    obj = json.loads(result.stdout)
    assert_job_json(obj, job_id)
    assert obj["kind"] == command[0]
    assert obj["status"] == ("succeeded" if wait else "queued")
    if wait:
        assert ISO_T.fullmatch(obj["finished_at"])


def test_export_and_import_detach_json_print_the_job(cli: Callable[..., Result], rows: Conn,
                                                     tmp_path: Path) -> None:
    exported = cli("export", "user_table_rows", "--scope", "1", "--detach", "--json")
    assert exported.exit_code == 0, exported.output
    obj = json.loads(exported.stdout)
    assert_job_json(obj, newest_job(rows))
    assert obj["kind"] == "export" and obj["status"] == "queued"

    rows.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{tmp_path}/",))
    source = tmp_path / "in.csv"
    source.write_text("id,n\n100001,1\n")
    imported = cli("import", "user_table_rows", str(source), "--scope", "1", "--detach",
                   "--json")
    assert imported.exit_code == 0, imported.output
    obj = json.loads(imported.stdout)
    assert_job_json(obj, newest_job(rows))
    assert obj["kind"] == "import" and obj["status"] == "queued"


def test_export_in_process_human_sizes_and_quiet(dsn: str, rows: Conn,
                                                 tmp_path: Path) -> None:
    store = f"file://{tmp_path}/out"

    def export(scope: str, *flags: str) -> Result:
        return CliRunner().invoke(main, ["--dsn", dsn, "--storage", store, "export",
                                         "user_table_rows", "--scope", scope, *flags])

    shown = export("1")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[-1].startswith("file://")
    (done,) = [line for line in shown.stderr.splitlines() if " succeeded: " in line]
    assert re.search(r"succeeded: [\d,]+ rows, \d+(?:\.\d)? (?:B|kB|MB), sha256 ", done), done
    assert not re.search(r"\d{4,} bytes", shown.stderr)

    quiet = export("2", "--quiet")
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert quiet.stdout.splitlines() == [quiet.stdout.strip()]
    assert quiet.stdout.startswith("file://")

    as_json = export("3", "--json", "-q")
    assert as_json.exit_code == 0, as_json.output
    obj = json.loads(as_json.stdout)
    assert obj["status"] == "succeeded" and obj["result"]["uri"].startswith("file://")
    assert_job_json(obj, newest_job(rows))


# --- lines, sizes, rates ------------------------------------------------------------------


def test_an_event_that_repeats_the_status_is_said_once() -> None:
    job = {"id": 7, "kind": "delete", "status": "succeeded", "done": 10, "total": 10,
           "target": "t", "scope": "1"}
    assert _line(_as_event(job, "succeeded")) == "job 7 delete succeeded 10/10 100%"
    for status in ("failed", "canceled"):
        assert _line(_as_event({**job, "status": status}, status)) == (
            f"job 7 delete {status} 10/10 100%")
    running = {**job, "status": "running", "done": 5}
    assert _line(_as_event(running, "progress")) == "job 7 delete progress: running 5/10 50%"


def test_human_sizes_and_ages() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(999) == "999 B"
    assert human_bytes(1234) == "1.2 kB"
    assert human_bytes(1_234_567) == "1.2 MB"
    assert human_bytes(5 * 10**9) == "5.0 GB"
    assert human_bytes(3 * 10**15) == "3000.0 TB"
    assert [human_age(s) for s in (0, 59, 60, 3599, 3600, 86400 * 3 + 5)] == [
        "0s", "59s", "1m", "59m", "1h", "3d"]


def test_rate_counts_from_started_at_not_created_at() -> None:
    now = datetime.now(timezone.utc)
    job = {"done": 8000, "created_at": now - timedelta(hours=1),
           "started_at": now - timedelta(seconds=1), "finished_at": now}
    assert rows_per_second(job) == pytest.approx(8000)
    assert rows_per_second({**job, "started_at": None}) is None
    unfinished = {**job, "finished_at": None, "started_at": now - timedelta(seconds=10)}
    rate = rows_per_second(unfinished)
    assert rate is not None and 700 < rate <= 800


# --- a terminal -----------------------------------------------------------------------------


def spawn(dsn: str, *args: str) -> pexpect.spawn:
    command = pgjobs_command()
    env = cli_env(PGJOBS_DSN=dsn, COLUMNS="200", TERM="dumb")
    return pexpect.spawn(command[0], [*command[1:], *args], env=env, encoding="utf-8",
                         timeout=60, dimensions=(50, 200))


def test_list_on_a_terminal_has_a_header_and_ages(dsn: str, conn: Conn) -> None:
    job_id = running_job(conn)
    conn.execute("UPDATE pgjobs.jobs SET created_at = now() - interval '2 hours 5 minutes'"
                 " WHERE id = %s", (job_id,))
    child = spawn(dsn, "list")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    lines = [line.rstrip() for line in child.before.replace("\r", "").splitlines() if line]
    assert lines[0].split() == ["ID", "KIND", "TARGET", "SCOPE", "STATUS", "DONE/TOTAL", "AGE"]
    assert lines[1].split() == [str(job_id), "custom", "items", "1", "running", "3/?", "2h"]
    # Aligned: every column starts where its header does.
    assert lines[1].index("custom") == lines[0].index("KIND")
