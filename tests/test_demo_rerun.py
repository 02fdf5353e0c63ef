"""`make demo` works every time a new user runs it, the README's first command.

Found at the end of stop 60: the demo's export went to
{--storage}/demo.user_table_rows/2/{job id}.csv.gz, --storage defaulting to
./pgjobs-exports. A second demo in that folder on another cluster (the first
one's removed with `pgjobs dev down` and its PGJOBS_HOME deleted, another
PGJOBS_HOME, a colleague's checkout) numbered its jobs from 1 again, and its
export was refused by the overwrite guard (42710: an object is there that no
attempt of this job wrote). Every object of a demo run now goes under
{--storage}/demo/{cluster's system identifier}/{UTC time}/, which no earlier
demo wrote, and the demo says where; the guard is untouched.

Also here: the demo twice on one cluster, and while the cluster is up; a
folder the demo may not write (refused with a hint, exit 2, before a cluster
starts or a table is built); a folder removed under the shell (a refusal, not a
traceback); a second demo on a database while one runs (refused, 55006).

Each embedded cluster gets its own PGJOBS_HOME under /tmp (reachable by the
postgres user when the suite runs as root) and is stopped at teardown."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from rich.console import Console

from pgjobs import embedded
from pgjobs.cli.demo import run_demo
from pgjobs.cli.main import main
from pgjobs.errors import InvalidInput
from tests.support import wait_for
from tests.support.databases import empty_database

HINT = ("the demo writes under --storage, by default ./pgjobs-exports in the folder it runs "
        "from: run it from a folder this user may write in, or pass --storage "
        "file:///a/folder/this/user/may/write (or set PGJOBS_STORAGE)")
RUN = re.compile(r"demo/(\d+)/(\d{8}T\d{6}Z)/demo\.user_table_rows/2/(\d+)\.csv\.gz$")


@pytest.fixture
def top(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder under /tmp for the PGJOBS_HOMEs and the user's working folder,
    no DSN or storage in the environment, wide lines (a URI whole on one)."""
    path = Path(tempfile.mkdtemp(prefix="pgjobs-demotest-", dir="/tmp"))
    path.chmod(0o755)
    for var in ("PGJOBS_DSN", "DATABASE_URL", "PGJOBS_STORAGE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "400")
    try:
        yield path
    finally:
        try:
            for home in sorted(path.glob("home*")):  # every cluster a test started
                monkeypatch.setenv("PGJOBS_HOME", str(home))
                embedded.down()
        finally:
            shutil.rmtree(path, ignore_errors=True)


def demo(*args: str) -> Result:
    return CliRunner().invoke(main, [*args, "demo", "--rows", "1000"])


def exports(folder: Path) -> dict[str, str]:
    """Every export file under folder (relative path -> SHA-256)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.csv.gz"))}


def system_identifier() -> str:
    dsn = embedded.dsn_if_running()
    assert dsn is not None
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert row is not None
    return str(row[0])


def assert_demo_wrote_under(result: Result, work: Path, cluster: str) -> str:
    """The demo succeeded, said where it writes, and its export is there: the
    file under demo/{cluster}/{run}/ that its last line names."""
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    folder = re.search(r"the demo writes its export \(the import's source\) and any rejects "
                       r"under (file://\S+)", result.stdout)
    assert folder is not None, result.stdout
    written = re.search(r"export written to (file://\S+)", result.stdout)
    assert written is not None, result.stdout
    uri = written.group(1)
    assert uri.startswith(folder.group(1) + "/"), (uri, folder.group(1))
    path = Path(uri.removeprefix("file://"))
    found = RUN.search(str(path.relative_to(work / "pgjobs-exports")))
    assert found is not None and found.group(1) == cluster, path
    assert path.is_file()
    return str(path.relative_to(work))


def test_a_second_cluster_demos_in_the_folder_an_earlier_one_used(
        top: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The repro: a demo (no --storage: ./pgjobs-exports), `pgjobs dev down`, its
    home removed; a demo on a new cluster (another PGJOBS_HOME) in the same
    folder; then that one again, the cluster up, as `make demo` twice. On main
    the second was refused (42710): a folder per cluster and per run."""
    work = top / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("PGJOBS_HOME", str(top / "home-a"))
    first = demo()
    assert first.exit_code == 0, first.output
    first_cluster = system_identifier()
    assert CliRunner().invoke(main, ["dev", "down"]).exit_code == 0
    shutil.rmtree(top / "home-a")
    before = exports(work)
    assert len(before) == 1

    monkeypatch.setenv("PGJOBS_HOME", str(top / "home-b"))
    second = demo()
    assert second.exit_code == 0, second.output  # main: 42710, refusing to write ...
    first_file = assert_demo_wrote_under(first, work, first_cluster)
    assert list(before) == [first_file]
    cluster = system_identifier()
    assert cluster != first_cluster
    second_file = assert_demo_wrote_under(second, work, cluster)
    # The cluster is up: the demo uses it, and again writes where nothing was.
    assert embedded.dsn_if_running() is not None
    third = demo()
    third_file = assert_demo_wrote_under(third, work, cluster)
    after = exports(work)
    assert sorted(after) == sorted([first_file, second_file, third_file])
    assert after[first_file] == before[first_file]  # the earlier one untouched
    # Each run's figures are as they were: four jobs, each with its rows.
    for result in (first, second, third):
        for job in ("delete", "backfill", "export", "import"):
            assert re.search(rf"│ {job} +│ +\d+ │ +[\d,]+ │ +[\d.]+ │", result.stdout), \
                result.stdout


def test_a_demo_leaves_what_earlier_demos_left_in_its_folder(cluster_url: str,
                                                             tmp_path: Path) -> None:
    """A folder holding main's layout of an earlier demo (a colleague's, one of
    another cluster, a checkout `make test` ran in): the export of every job id
    this database will number. On main the export was refused (42710); now the
    demo writes elsewhere and every object left there is as it was."""
    left = tmp_path / "demo.user_table_rows" / "2"
    left.mkdir(parents=True)
    for job_id in range(1, 21):
        (left / f"{job_id}.csv.gz").write_bytes(f"an earlier demo's job {job_id}\n".encode())
    before = exports(tmp_path)
    with empty_database(cluster_url, "demo_rerun") as dsn:
        out = io.StringIO()
        outcomes = run_demo(dsn, 1000, f"file://{tmp_path}", console=Console(file=out, width=400))
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert [o.status for o in outcomes] == ["succeeded"] * 4
    after = exports(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    new = [k for k in after if k not in before]
    assert len(new) == 1 and row is not None
    found = RUN.search(new[0])
    assert found is not None and found.group(1) == row[0], new
    assert f"export written to file://{tmp_path}/{new[0]}" in out.getvalue()
    # Said once, naming the folder, which stays (a user's files).
    note = (f"note: {tmp_path}/demo.user_table_rows holds the exports of earlier pgjobs "
            "demos, which wrote there; demos now write under demo/ and never read that "
            "folder: remove it if you no longer want those files")
    assert out.getvalue().count("demo.user_table_rows holds") == 1, out.getvalue()
    assert note in out.getvalue().splitlines(), out.getvalue()


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A folder this user may not write in: immutable for root (whom no mode
    bits stop), mode 555 for anybody else."""
    folder = tmp_path / "locked"
    folder.mkdir()
    root = os.geteuid() == 0
    if root:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        assert not os.access(folder, os.W_OK)
        yield folder
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_a_demo_from_a_folder_it_may_not_write_says_so(
        top: Path, locked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo` in a folder the user may not write: exit 2, one line naming
    the folder, the hint says why ./pgjobs-exports and the way out (main's
    hint told a user who typed no --storage to give `--storage or --to` a
    folder); no cluster started."""
    monkeypatch.chdir(locked)
    monkeypatch.setenv("PGJOBS_HOME", str(top / "home"))
    result = demo()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    assert result.stderr.strip() == (
        f"error: --storage file://{locked}/pgjobs-exports: {locked} is not writable by this "
        f"user [22023] (hint: {HINT})")
    assert not (top / "home").exists()
    assert embedded.dsn_if_running() is None


def test_a_demo_whose_run_folder_it_may_not_write_builds_nothing(
        cluster_url: str, tmp_path: Path, locked: Path) -> None:
    """--storage writable, its demo/ folder not (left by another user): refused
    with the same hint before the demo's table is built."""
    storage = tmp_path
    (storage / "demo").symlink_to(locked)
    with empty_database(cluster_url, "demo_locked") as dsn:
        with pytest.raises(InvalidInput) as refused:
            run_demo(dsn, 1000, f"file://{storage}",
                     console=Console(file=io.StringIO(), width=400))
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM pg_namespace "
                               "WHERE nspname = 'demo'").fetchone()
    assert refused.value.sqlstate == "22023"
    assert refused.value.hint == HINT
    assert refused.value.message.startswith(f"this run's folder under --storage file://"
                                            f"{storage}/demo/")
    assert refused.value.message.endswith(f": {storage}/demo is not writable by this user")
    assert row == (0,)


def test_a_demo_from_a_removed_folder_is_refused_not_a_traceback(
        top: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's folder removed (and maybe made again) by another shell: the
    default ./pgjobs-exports cannot be made absolute (os.getcwd fails). Main
    ended in a FileNotFoundError traceback; now exit 2 with a hint, and no
    cluster started."""
    gone = top / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    monkeypatch.setenv("PGJOBS_HOME", str(top / "home"))
    result = demo()
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output and result.stdout == ""
    assert result.stderr.strip() == (
        "error: --storage: invalid storage URI 'file://./pgjobs-exports': ./pgjobs-exports is "
        "relative, and the folder this command runs in no longer exists [22023] (hint: cd "
        "into a folder that exists, or give an absolute path: file:///absolute/path)")
    assert not (top / "home").exists()


def test_a_run_folder_where_the_system_identifier_is_not_granted(cluster_url: str,
                                                                  tmp_path: Path) -> None:
    """A login that may not call pg_control_system() (revoked from PUBLIC, as some
    administrators do): the run's folder names the database instead of the
    cluster."""
    from pgjobs import db
    from pgjobs.cli.demo import run_folder

    with empty_database(cluster_url, "demo_folder") as dsn, \
            psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS demo_folder_login")
        admin.execute("CREATE ROLE demo_folder_login LOGIN NOSUPERUSER")
        # pg_proc is the database's own: the revoke ends with it.
        admin.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
        try:
            with db.connect(make_conninfo(dsn, user="demo_folder_login")) as conn:
                folder = run_folder(conn, f"file://{tmp_path}")
        finally:
            admin.execute("DROP ROLE demo_folder_login")
    name = conninfo_to_dict(dsn)["dbname"]
    assert re.fullmatch(rf"file://{tmp_path}/demo/database-{re.escape(name)}/\d{{8}}T\d{{6}}Z",
                        folder), folder


def test_a_second_demo_on_a_database_while_one_runs_is_refused(cluster_url: str,
                                                                tmp_path: Path) -> None:
    """Found here: two demos at once on one database (two terminals, `make demo`
    with the cluster up and a demo running) ran side by side, and the second
    dropped and refilled demo.user_table_rows under the first one's jobs (its
    import failed: 'column "id" does not exist in table 20240'). The second is
    refused (55006) while the first holds the demo's lock, before it migrates
    or builds anything; once the first has ended, a demo runs."""
    from pgjobs.errors import Conflict

    with empty_database(cluster_url, "demo_twice") as dsn, \
            psycopg.connect(dsn, autocommit=True) as first:
        # The running demo's session: holds what run_demo takes first.
        first.execute("SET application_name = 'pgjobs demo'")
        first.execute("SELECT pg_advisory_lock(1885825634, 1)")  # operations.md's table
        with pytest.raises(Conflict) as refused:
            run_demo(dsn, 1000, f"file://{tmp_path}",
                     console=Console(file=io.StringIO(), width=400))
        assert refused.value.sqlstate == "55006"
        assert refused.value.message == (
            "another pgjobs demo is running on this database (a session with "
            "application_name 'pgjobs demo'): this one would drop and refill "
            "demo.user_table_rows under its jobs")
        assert refused.value.hint == (
            "wait for that demo to end, then run this one again; or run it on another "
            "cluster (another PGJOBS_HOME) or database (--dsn)")
        assert first.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN "
                             "('demo', 'pgjobs')").fetchone() == (0,)
        assert list(tmp_path.iterdir()) == []
        first.execute("SELECT pg_advisory_unlock(1885825634, 1)")
        outcomes = run_demo(dsn, 1000, f"file://{tmp_path}",
                            console=Console(file=io.StringIO(), width=400))
        assert [o.status for o in outcomes] == ["succeeded"] * 4
        # The demo's session has ended: its lock with it. Its backend lets go as
        # it exits, a moment after the demo closed the connection (at load 10
        # the next statement here came first): polled, with a deadline.
        wait_for(lambda: first.execute("SELECT pg_try_advisory_lock(1885825634, 1)"
                                       ).fetchone() == (True,),
                 30, "the demo's lock let go with its session")


def test_an_application_s_own_advisory_keys_do_not_hold_the_demo(cluster_url: str,
                                                                  tmp_path: Path) -> None:
    """The demo's lock was the one-key pg_try_advisory_lock(hashtext('pgjobs.demo')):
    any bigint key an application takes for its own work could be that one, and
    its lock refused the demo (55006, "another pgjobs demo is running"). The
    demo takes the two-key form (1885825634, 1), which no one-key lock conflicts
    with: not that old key, nor the bigint whose halves are the two keys."""
    with empty_database(cluster_url, "demo_app_keys") as dsn, \
            psycopg.connect(dsn, autocommit=True) as app:
        app.execute("SET application_name = 'an application'")
        app.execute("SELECT pg_advisory_lock(hashtext('pgjobs.demo'))")
        app.execute("SELECT pg_advisory_lock((1885825634::bigint << 32) | 1)")
        app.execute("SELECT pg_advisory_lock(1)")
        out = io.StringIO()
        outcomes = run_demo(dsn, 1000, f"file://{tmp_path}",
                            console=Console(file=out, width=400))
        assert [o.status for o in outcomes] == ["succeeded"] * 4
        assert "note:" not in out.getvalue()  # no earlier demo's folder here: no note
        held = app.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                           "AND pid = pg_backend_pid() AND granted").fetchone()
        assert held == (3,)  # the application kept its keys throughout
