"""file:// exports write only where their URI names: a symbolic link inside an
allowed folder (as import sources already are refused for) must not lead the
worker's writes outside it. Links at or above the trusted root (the allow-list
prefix that admitted the URI, or the worker's --storage folder) are the
operator's and are followed: a data folder that is itself a link works."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage, upload
from pgjobs.poller.worker import Worker
from tests.support import (
    job,
    make_items,
    make_people,
    object_bytes,
    run_export,
    run_import,
    scalar,
    submit_export,
    submit_import,
)

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def no_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no trusted root (the process keeps those it met)."""
    monkeypatch.setattr(storage, "_roots", {})


def _linked_data(tmp_path: Path) -> Path:
    """`data` -> `disk1/data`: the operator's data folder is itself a link."""
    real = tmp_path / "disk1" / "data"
    real.mkdir(parents=True)
    os.symlink(real, tmp_path / "data")
    return tmp_path / "data"


@pytest.mark.parametrize("link", ["destination", "below"])
def test_an_export_through_a_symbolic_link_is_refused(conn: Conn, dsn: str, tmp_path: Path,
                                                      link: str) -> None:
    """The allow-list judges the destination's text; a link planted at the
    destination folder, or at a folder the export's object key goes through
    ({target}/{scope}/...), made the worker create directories and write the
    object wherever the link pointed."""
    make_items(conn)
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{allowed}",))
    if link == "destination":
        os.symlink(outside, allowed / "exports")
    else:
        (allowed / "exports").mkdir()
        os.symlink(outside, allowed / "exports" / "items")
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{allowed}/exports"})
    outcome = run_export(dsn, job_id, "file:///unused")
    row = job(conn, job_id)
    assert list(outside.rglob("*")) == [], list(outside.rglob("*"))
    assert outcome.status == "failed" and row["attempts"] == 1, (outcome, row["error"])
    assert "symbolic link" in row["error"], row["error"]


def test_a_deletion_through_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    """An export's object is deleted (pgjobs.prune, the sweep) at the URI it was
    written to; a folder of that URI replaced by a link since made the worker
    delete the file of that name wherever the link pointed."""
    from pgjobs.poller import storage

    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside" / "1"
    allowed.mkdir()
    outside.mkdir(parents=True)
    (outside / "7.csv").write_text("someone else's")
    os.symlink(outside.parent, allowed / "items")
    with pytest.raises(storage.StorageError) as caught:
        storage.delete(f"file://{allowed}/items/1/7.csv")
    assert "symbolic link" in str(caught.value) and not caught.value.retryable
    assert (outside / "7.csv").read_text() == "someone else's"
    # A link at the object itself is what is deleted, not what it points to.
    os.symlink(outside / "7.csv", allowed / "8.csv")
    assert storage.delete(f"file://{allowed}/8.csv")
    assert (outside / "7.csv").exists() and not (allowed / "8.csv").exists()


@pytest.mark.parametrize("root", ["allowed", "storage", "parallel"])
def test_a_data_folder_that_is_a_link_above_the_root_works(
        conn: Conn, dsn: str, tmp_path: Path, root: str) -> None:
    """An operator's data folder that is itself a link (`/data -> /mnt/disk1/data`)
    under an allow-list prefix or the worker's --storage made every export fail:
    the rule judged the whole path. Links at or above the trusted root are
    followed; the folders below it (target, scope) are made without links."""
    make_items(conn)
    data = _linked_data(tmp_path)
    options: dict[str, Any] = {}
    if root != "storage":
        conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{data}/exports",))
        options["destination"] = f"file://{data}/exports"
    if root == "parallel":
        options.update(parallel=2, chunk_rows=7, part_size=1024)
    job_id = submit_export(conn, "1", {}, options)
    outcome = run_export(dsn, job_id, f"file://{data}/pgjobs" if root == "storage"
                         else "file:///unused")
    assert outcome.status == "succeeded", (outcome, job(conn, job_id)["error"])
    assert outcome.result is not None
    assert object_bytes(outcome.result)
    folder = "pgjobs" if root == "storage" else "exports"
    written = [p for p in (tmp_path / "disk1" / "data" / folder).rglob("*") if p.is_file()]
    assert [p.name for p in written] == [os.path.basename(outcome.result["uri"])], written
    # Trusted for the attempt only: a prefix disallowed since is no root of the next.
    assert storage.root_of(f"{data}/{folder}/items") == "/"


def test_a_link_below_a_linked_root_is_still_refused(conn: Conn, dsn: str,
                                                      tmp_path: Path) -> None:
    """Following the links above the root follows none below it."""
    make_items(conn)
    data = _linked_data(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (data / "exports").mkdir()
    os.symlink(outside, data / "exports" / "items")
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{data}/exports",))
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{data}/exports"})
    outcome = run_export(dsn, job_id, "file:///unused")
    assert list(outside.rglob("*")) == []
    assert outcome.status == "failed" and "symbolic link" in (job(conn, job_id)["error"] or "")


def test_prune_deletes_below_a_linked_allowed_prefix(conn: Conn, dsn: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker deleting a pruned object asks the database which allow-list
    prefix it lies under: its trusted root, though this process never wrote it."""
    make_items(conn)
    data = _linked_data(tmp_path)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{data}/exports",))
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{data}/exports"})
    outcome = run_export(dsn, job_id, "file:///unused")
    assert outcome.status == "succeeded" and outcome.result is not None, outcome
    uri = outcome.result["uri"]
    assert storage.exists(uri)
    monkeypatch.setattr(storage, "_roots", {})  # another worker process
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days' "
                 "WHERE id = %s", (job_id,))
    conn.execute("SELECT pgjobs.prune('1 day')")
    Worker(dsn, f"file://{tmp_path}/storage", once=True, poll=0.1).run()
    errors = conn.execute("SELECT last_error FROM pgjobs.storage_deletions").fetchall()
    assert errors == [] and not storage.exists(uri), errors


def test_a_folder_swapped_for_a_link_after_the_upload_began_is_not_followed(
        tmp_path: Path) -> None:
    """The check-then-use race: every write, rename and deletion walks the folders
    below the root again with O_NOFOLLOW (openat), so a folder replaced by a link
    between the upload's start and a later part (or its rename into place) is
    refused, never written through."""
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    outside.mkdir()
    storage.trust_root(f"file://{allowed}")
    loc = storage.parse(f"file://{allowed}/items/1/7.csv")
    upload = storage.resume_upload(loc, "", "a1-x", None, part_size=1024, digests=[])
    upload.write_part(b"one\n")
    os.rename(allowed / "items", tmp_path / "moved")
    os.symlink(outside, allowed / "items")
    (outside / "1").mkdir()
    with pytest.raises(storage.StorageError) as caught:
        upload.write_part(b"two\n")
    assert "symbolic link" in str(caught.value) and not caught.value.retryable
    with pytest.raises(storage.StorageError):
        upload.finish()
    assert list((outside / "1").iterdir()) == []


@pytest.mark.parametrize("parts", [1, 2])
def test_sizes_and_read_backs_follow_no_link_below_the_root(tmp_path: Path,
                                                            parts: int) -> None:
    """An import's total and an export's read-back (one stream, or two halves on
    threads) open the file by the same walk as the writes: a folder below the
    root that is a link leads them nowhere else."""
    import hashlib

    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    halves = [b"someone else", b"'s file\n"][:parts]
    (outside / "7.csv").write_bytes(b"".join(halves))
    os.symlink(outside, allowed / "items")
    storage.trust_root(f"file://{allowed}")
    uri = f"file://{allowed}/items/7.csv"
    digests = [[len(h), hashlib.sha256(h).hexdigest()] for h in halves]
    for call in (lambda: storage.size(uri),
                 lambda: storage.check_object(storage.parse(uri), digests)):
        with pytest.raises(storage.StorageError) as caught:
            call()
        assert "symbolic link" in str(caught.value) and not caught.value.retryable


def test_a_folder_made_and_swapped_for_a_link_before_it_is_opened_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window between making a folder and opening it: a link swapped in there
    is refused by the O_NOFOLLOW open, and nothing is written where it points."""
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    storage.trust_root(f"file://{allowed}")
    real_mkdir = os.mkdir

    def mkdir_then_swap(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, mode, dir_fd=dir_fd)
        if str(path) == "1" or str(path).endswith("/1"):
            os.rmdir(path, dir_fd=dir_fd)
            os.symlink(outside, path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir_then_swap)
    with pytest.raises(storage.StorageError) as caught:
        storage.write(f"file://{allowed}/items/1/7.csv", b"rows\n")
    assert "symbolic link" in str(caught.value) and not caught.value.retryable
    assert list(outside.iterdir()) == []


def test_a_link_at_or_below_a_tenant_folder_is_refused(conn: Conn, dsn: str,
                                                        tmp_path: Path) -> None:
    """A per-tenant prefix (`/data/t/{scope}/exports`): its folders from the
    scope's on lie in the tenant's own folder, which the tenant may write (a
    share, an SFTP drop). The trusted root was the expanded prefix, so a link
    the tenant planted there (`t/1/exports -> t/2/exports`) was followed: tenant
    1's import read tenant 2's file, its export wrote into tenant 2's folder.
    The root of such a prefix is the administrator's text before `{scope}`."""
    make_people(conn)
    make_items(conn)
    tenants = tmp_path / "t"
    (tenants / "2" / "exports").mkdir(parents=True)
    (tenants / "2" / "exports" / "people.csv").write_bytes(b"name,age\nsecret,1\n")
    (tenants / "1").mkdir()
    os.symlink(tenants / "2" / "exports", tenants / "1" / "exports")
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{tenants}/{{scope}}/exports",))
    assert conn.execute("SELECT pgjobs._storage_root_for(%s, '1')",
                        (f"file://{tenants}/1/exports/people.csv",)).fetchone() == (
        f"file://{tenants}",)
    job_id = submit_import(conn, f"file://{tenants}/1/exports/people.csv", scope="1")
    outcome = run_import(dsn, job_id, f"file://{tmp_path}/storage")
    row = job(conn, job_id)
    assert outcome.status == "failed" and "symbolic link" in (row["error"] or ""), row
    assert scalar(conn, "SELECT count(*) FROM people") == 0
    before = sorted(p.name for p in (tenants / "2" / "exports").rglob("*"))
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{tenants}/1/exports"})
    outcome = run_export(dsn, job_id, "file:///unused")
    row = job(conn, job_id)
    assert outcome.status == "failed" and "symbolic link" in (row["error"] or ""), row
    assert sorted(p.name for p in (tenants / "2" / "exports").rglob("*")) == before


def _fifo_call(call: Any, fifo: Path) -> BaseException | None:
    """Run ``call`` on a thread; what it raised. Fails the test (after unblocking
    the thread: the other end of the FIFO opened) when it is still blocked after
    30 s."""
    import threading

    caught: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            caught.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():
        for flags in (os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY | os.O_NONBLOCK):
            try:
                os.close(os.open(fifo, flags))
            except OSError:
                continue
        thread.join(30)
        pytest.fail(f"blocked on the FIFO {fifo}")
    return caught[0]


@pytest.mark.parametrize("action", ["write", "read-back", "hash", "inherit"])
def test_a_fifo_where_the_worker_opens_a_file_fails_instead_of_hanging(
        tmp_path: Path, action: str) -> None:
    """Every file the worker opens below the root (an import's rejects written
    through its temporary file, an export read back or hashed, a previous owner's
    temporary file inherited) was opened blocking: a FIFO planted at that name
    (by whoever may write below the root) hung the worker's thread in open()
    for ever. The shared open refuses anything but a regular file, without
    blocking."""
    import hashlib

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    storage.trust_root(f"file://{allowed}")
    digests = [[4, hashlib.sha256(b"one\n").hexdigest()]]
    loc = storage.parse(f"file://{allowed}/7.csv")
    if action == "write":
        fifo = Path(storage.write_temp_path(str(allowed / "7.csv")))
        call: Any = lambda: storage.write(loc.uri, b"rows\n")  # noqa: E731
    elif action == "inherit":
        fifo = allowed / ".7.csv.pgjobs-old.tmp"
        call = lambda: storage.resume_upload(  # noqa: E731
            loc, "", "a2-x", {"tmp": str(fifo), "size": 4}, digests=digests)
    else:
        fifo = allowed / "7.csv"
        call = ((lambda: storage.check_object(loc, digests)) if action == "read-back"
                else lambda: storage.hash_object(loc))
    os.mkfifo(fifo)
    caught = _fifo_call(call, fifo)
    assert isinstance(caught, storage.StorageError | upload.CannotResume), repr(caught)
    assert "not a regular file" in str(caught), caught


def test_discarding_an_upload_deletes_nothing_through_a_link(tmp_path: Path) -> None:
    """An upload given up (an export starting over, or ending for good) removed
    its checkpointed temporary file with a plain unlink: a folder of it swapped
    for a link since led the deletion wherever the link pointed. It goes by the
    same walk as every other deletion below the root."""
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    storage.trust_root(f"file://{allowed}")
    victim = outside / ".7.csv.pgjobs-a1-x.tmp"
    victim.write_text("someone else's")
    os.symlink(outside, allowed / "items")
    loc = storage.parse(f"file://{allowed}/items/7.csv")
    storage.discard_upload(loc, {"tmp": f"{allowed}/items/{victim.name}", "size": 0})
    assert victim.read_text() == "someone else's"
    # Without a link, the temporary file goes.
    (allowed / "items").unlink()
    (allowed / "items").mkdir()
    (allowed / "items" / victim.name).write_text("ours")
    storage.discard_upload(loc, {"tmp": f"{allowed}/items/{victim.name}", "size": 0})
    assert not (allowed / "items" / victim.name).exists()


def test_prune_deletes_below_a_linked_per_tenant_prefix(conn: Conn, dsn: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """pgjobs.prune deletes the job row in the statement that queues its objects:
    the worker asked the root with the job's scope, always NULL by then, so no
    per-tenant prefix (`data/t/{scope}`) was a root and every such deletion under
    a data folder that is a link failed for good. The root of a per-tenant
    prefix is its text before `{scope}`, which needs no scope to find."""
    make_items(conn)
    data = _linked_data(tmp_path)
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{data}/t/{{scope}}",))
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{data}/t/1"})
    outcome = run_export(dsn, job_id, "file:///unused")
    assert outcome.status == "succeeded" and outcome.result is not None, (
        outcome, job(conn, job_id)["error"])
    uri = outcome.result["uri"]
    assert storage.exists(uri)
    monkeypatch.setattr(storage, "_roots", {})  # another worker process
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days' "
                 "WHERE id = %s", (job_id,))
    conn.execute("SELECT pgjobs.prune('1 day')")
    Worker(dsn, f"file://{tmp_path}/storage", once=True, poll=0.1).run()
    errors = conn.execute("SELECT last_error FROM pgjobs.storage_deletions").fetchall()
    assert errors == [] and not storage.exists(uri), errors


@pytest.mark.parametrize("action", ["write", "append"])
def test_a_hard_link_where_the_worker_writes_changes_no_other_file(
        tmp_path: Path, action: str) -> None:
    """A hard link is no symbolic link, and O_NOFOLLOW does not see it: one planted
    at a name the worker writes (the rejects' temporary file, or an upload's
    temporary file replaced between parts) made the worker truncate and
    overwrite, or append to, another file of the filesystem. A file the worker
    opens to write must have no other name."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    victim = tmp_path / "victim.csv"
    victim.write_bytes(b"someone else's\n")
    storage.trust_root(f"file://{allowed}")
    loc = storage.parse(f"file://{allowed}/7.csv")
    if action == "write":
        os.link(victim, Path(storage.write_temp_path(str(allowed / "7.csv"))))
        call: Any = lambda: storage.write(loc.uri, b"rows\n")  # noqa: E731
    else:
        upload_ = storage.resume_upload(loc, "", "a1-x", None, digests=[])
        upload_.write_part(b"one\n")
        tmp = Path(upload_.state()["tmp"])
        tmp.unlink()
        os.link(victim, tmp)
        call = lambda: upload_.write_part(b"two\n")  # noqa: E731
    with pytest.raises(storage.StorageError) as caught:
        call()
    assert "hard link" in str(caught.value) and not caught.value.retryable, caught.value
    assert caught.value.hint
    assert victim.read_bytes() == b"someone else's\n"
