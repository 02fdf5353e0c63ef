"""A local import source is read only when it is what its URI names: a regular
file reached without symbolic links. The allow-list judges the URI's text, so a
link (in any component) inside an allowed folder must not lead the worker to a
file outside it, and a FIFO or a device must fail the job, not hang it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import allow, claim_import, job, make_people, scalar, submit_import

Conn = psycopg.Connection[Any]


@pytest.fixture
def folders(conn: Conn, tmp_path: Path) -> tuple[Path, Path]:
    make_people(conn)
    allowed = tmp_path / "in"
    outside = tmp_path / "secret"
    allowed.mkdir()
    outside.mkdir()
    (outside / "people.csv").write_bytes(b"name,age\nmallory,1\n")
    allow(conn, f"file://{allowed}")
    return allowed, outside


def _run(conn: Conn, dsn: str, allowed: Path, source: Path) -> dict[str, Any]:
    job_id = submit_import(conn, f"file://{source}")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{allowed}/store").run()
    return job(conn, job_id)


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_symbolic_link_inside_the_allowed_folder_is_refused(
        conn: Conn, dsn: str, folders: tuple[Path, Path], link: str) -> None:
    allowed, outside = folders
    if link == "file":
        source = allowed / "people.csv"
        source.symlink_to(outside / "people.csv")
    else:
        (allowed / "sub").symlink_to(outside)
        source = allowed / "sub" / "people.csv"
    row = _run(conn, dsn, allowed, source)
    assert row["status"] == "failed", row
    assert "symbolic link" in row["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 0


def test_a_data_folder_that_is_a_link_above_the_allowed_prefix_is_followed(
        conn: Conn, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's data folder that is itself a link (`/data -> /mnt/disk1/data`)
    made every file:// import fail: the rule judged the whole path. Links at or
    above the allow-list prefix that admitted the source (an administrator wrote
    it) are followed; one below it still is not (the test above)."""
    monkeypatch.setattr(storage, "_roots", {})
    make_people(conn)
    real = tmp_path / "disk1" / "data"
    (real / "in").mkdir(parents=True)
    (real / "in" / "people.csv").write_bytes(b"name,age\nalice,1\n")
    (tmp_path / "data").symlink_to(real)
    allow(conn, f"file://{tmp_path}/data/in")
    row = _run(conn, dsn, tmp_path / "data" / "in", tmp_path / "data" / "in" / "people.csv")
    assert row["status"] == "succeeded", row["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 1


def test_a_fifo_fails_the_job_instead_of_hanging(
        conn: Conn, dsn: str, folders: tuple[Path, Path]) -> None:
    allowed, _ = folders
    fifo = allowed / "people.csv"
    os.mkfifo(fifo)
    done = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(_run(conn, dsn, allowed, fifo))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(30):
        # Unblock the reader so the thread ends, then fail.
        with open(fifo, "wb"):
            pass
        pytest.fail("the import blocked on a FIFO")
    assert result["status"] == "failed" and "not a regular file" in result["error"]


@pytest.mark.parametrize("make", ["fifo", "dir", "link"])
def test_open_range_reads_only_regular_files(tmp_path: Path, make: str) -> None:
    path = tmp_path / "x"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "dir":
        path.mkdir()
    else:
        (tmp_path / "real").write_bytes(b"a\n")
        path.symlink_to(tmp_path / "real")
    with pytest.raises(storage.StorageError) as info:
        b"".join(storage.open_range(f"file://{path}"))
    assert info.value.retryable is False


def test_a_source_allowed_by_its_own_name_under_a_linked_data_folder_is_read(
        conn: Conn, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An allow-list prefix may name the one file a client may import
    (`file:///data/in/people.csv`): the root is then the file itself, and the
    walk began at the root of its folder, none, so a data folder that is a link
    (`/data -> /mnt/disk1/data`) above it failed the import. Links at or above
    the root are followed there too."""
    monkeypatch.setattr(storage, "_roots", {})
    make_people(conn)
    real = tmp_path / "disk1" / "data"
    (real / "in").mkdir(parents=True)
    (real / "in" / "people.csv").write_bytes(b"name,age\nalice,1\n")
    (tmp_path / "data").symlink_to(real)
    allow(conn, f"file://{tmp_path}/data/in/people.csv")
    row = _run(conn, dsn, tmp_path / "data" / "in", tmp_path / "data" / "in" / "people.csv")
    assert row["status"] == "succeeded", row["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 1
