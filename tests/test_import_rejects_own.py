"""An import's rejects object is its own.

Its name was ``{target}/{scope}/{job id}.rejects.jsonl`` under the worker's
storage, depending only on the target, scope and job id, and job ids are per
database: two pgjobs databases whose workers write to one storage (staging
beside production, a database restored beside the one it came from) each run
their import job 1 into scope 1 of ``people``. The second import's rejects
were written over the first's, the first job's ``result.rejects_uri`` then
named the other database's rejected records (another tenant's data), and
pruning either job deleted the other's object.

An import now gives its rejects object a name of its own
(``{job id}.{8 hex digits}.rejects.jsonl``, one that held nothing when looked
at), names it in its checkpoint (``pgjobs.import_rejects_placed``) and then
creates it only where no object is (a conditional create: linkat on disk,
``If-None-Match: *`` on S3): every later attempt writes its rejects there
again, and pruning deletes that object and no other."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import importer, storage
from pgjobs.poller.importer import Importer
from pgjobs.poller.worker import Worker
from tests.support import allow, claim_import, job, make_people, submit_import

Conn = psycopg.Connection[Any]

# (max_rejects, status): the rejects written as the job succeeds (_finish), or
# as it fails on too many rejects (_keep_rejects).
ENDINGS = {"succeeded": (5, "succeeded"), "failed": (1, "failed")}


def source(folder: Path, tag: str) -> Path:
    """A CSV whose two bad records name ``tag`` (the database they belong to)."""
    path = folder / f"{tag}.csv"
    path.write_bytes(f"name,age\n{tag}-ok,1\n{tag}-bad,x\n{tag}-worse,y\n".encode())
    return path


def database(fresh_database: Callable[[], str], tmp_path: Path, tag: str) -> tuple[str, Path]:
    """A new pgjobs database with `people` and an allowed source folder of its own."""
    dsn = fresh_database()
    folder = tmp_path / tag
    folder.mkdir()
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_people(conn)
        allow(conn, f"file://{folder}")
    return dsn, folder


def run_import(dsn: str, path: Path, store: str, max_rejects: int,
               **kw: Any) -> tuple[int, dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": max_rejects})
    Importer(dsn, job_id, claim_import(dsn, job_id), store, **kw).run()
    with psycopg.connect(dsn, autocommit=True) as conn:
        return job_id, job(conn, job_id)


def records(uri: str) -> list[str]:
    return [json.loads(x)["record"].strip() for x in storage.read(uri).splitlines()]


def rejects_objects(store: str) -> list[str]:
    return [p for p in storage.list_paths(store) if p.endswith(".rejects.jsonl")]


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The storage both databases' workers write to."""
    if request.param == "s3":
        return str(request.getfixturevalue("bucket"))
    return f"file://{tmp_path}/shared"


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_two_databases_sharing_storage_keep_each_import_s_rejects(
        fresh_database: Callable[[], str], tmp_path: Path, store: str, ending: str) -> None:
    max_rejects, status = ENDINGS[ending]
    rows = {}
    for tag in ("a", "b"):
        dsn, folder = database(fresh_database, tmp_path, tag)
        rows[tag] = run_import(dsn, source(folder, tag), store, max_rejects)
    (first_id, first), (second_id, second) = rows["a"], rows["b"]
    assert first_id == second_id  # the same documented key: the case at hand
    assert first["status"] == second["status"] == status, (first["error"], second["error"])
    mine, theirs = first["result"]["rejects_uri"], second["result"]["rejects_uri"]
    assert mine != theirs
    # Each a name of its own (a random part, chosen before the object is
    # created and named in the checkpoint first: pgjobs.import_rejects_placed).
    for uri in (mine, theirs):
        assert re.search(rf"/people/1/{first_id}\.[0-9a-f]{{8}}\.rejects\.jsonl$", uri), uri
    expected = ["a-bad,x", "a-worse,y"], ["b-bad,x", "b-worse,y"]
    assert (records(mine), records(theirs)) == expected
    # Each job's checkpoint names the object it created, and only that one.
    assert first["checkpoint"]["rejects_uri"] == mine
    assert second["checkpoint"]["rejects_uri"] == theirs


def test_pruning_one_database_s_import_deletes_only_its_own_rejects(
        fresh_database: Callable[[], str], tmp_path: Path, store: str) -> None:
    """Either database pruning its job deletes its own object; the other's stays."""
    dsns, uris = {}, {}
    for tag in ("a", "b"):
        dsn, folder = database(fresh_database, tmp_path, tag)
        job_id, row = run_import(dsn, source(folder, tag), store, 5)
        dsns[tag], uris[tag] = dsn, row["result"]["rejects_uri"]
        assert row["status"] == "succeeded", row["error"]
    assert uris["a"] != uris["b"]
    for tag, kept in (("b", ["a"]), ("a", [])):
        with psycopg.connect(dsns[tag], autocommit=True) as conn:
            conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'")
            summary = conn.execute("SELECT pgjobs.prune('1 day')").fetchone()
            assert summary is not None and summary[0]["objects_queued"] == 1
        Worker(dsns[tag], store, once=True, poll=0.1, stale_after=timedelta(hours=1)).run()
        assert not storage.exists(uris[tag])
        for other in kept:
            assert storage.exists(uris[other]), f"pruning {tag} deleted {other}'s rejects"
            assert records(uris[other]) == [f"{other}-bad,x", f"{other}-worse,y"]
    assert rejects_objects(store) == []


def test_a_retry_rewrites_its_own_rejects_not_the_other_database_s(
        fresh_database: Callable[[], str], tmp_path: Path, store: str) -> None:
    """Database a's import fails with rejects (its object: the documented key);
    database b's import of the same job id rejects records too (a name of its
    own). a's job, retried after its source was fixed, writes its rejects again
    into its own object, which ends holding exactly its rejects; b's stays."""
    dsn_a, folder_a = database(fresh_database, tmp_path, "a")
    path = source(folder_a, "a")
    job_id, failed = run_import(dsn_a, path, store, 1)
    assert failed["status"] == "failed" and failed["error"].startswith("line 4:")
    mine = failed["result"]["rejects_uri"]
    assert records(mine) == ["a-bad,x", "a-worse,y"]
    dsn_b, folder_b = database(fresh_database, tmp_path, "b")
    _, other = run_import(dsn_b, source(folder_b, "b"), store, 5)
    theirs = other["result"]["rejects_uri"]
    assert other["status"] == "succeeded" and theirs != mine
    path.write_bytes(path.read_bytes().replace(b"a-worse,y", b"a-worse,7"))  # same length
    with psycopg.connect(dsn_a, autocommit=True) as conn:
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
        assert job(conn, job_id)["result"] is None  # the retry cleared it
    Importer(dsn_a, job_id, claim_import(dsn_a, job_id), store).run()
    with psycopg.connect(dsn_a, autocommit=True) as conn:
        row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["rejects_uri"] == mine and row["result"]["rejected"] == 1
    assert records(mine) == ["a-bad,x"]
    assert records(theirs) == ["b-bad,x", "b-worse,y"]
    assert sorted(rejects_objects(store)) == sorted(storage.parse(u).path
                                                    for u in (mine, theirs))


@pytest.mark.parametrize("batch_bytes", [None, 24], ids=["one_batch", "many_batches"])
def test_the_checkpoint_names_the_object_through_every_later_batch(
        conn: Conn, dsn: str, tmp_path: Path, batch_bytes: int | None) -> None:
    """An attempt that failed after rejecting records created the object; the
    next attempt commits more batches (each one's checkpoint sent by the
    worker, which does not name the object) and rejects more: the object it
    writes is the one the first created, never a second one beside it (named
    by nothing but the job, and deleted by nothing)."""
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    path = folder / "p.csv"
    lines = [b"name,age"] + [b"p%d,%s" % (n, b"x" if n in (3, 9) else b"%d" % n)
                             for n in range(2, 30)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    store = f"file://{tmp_path}/store"
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 1})
    Importer(dsn, job_id, claim_import(dsn, job_id), store, batch_bytes=batch_bytes).run()
    first = job(conn, job_id)
    assert first["status"] == "failed", first["error"]
    mine = first["checkpoint"]["rejects_uri"]
    path.write_bytes(path.read_bytes().replace(b"p9,x", b"p9,9"))  # fixed in place
    conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    Importer(dsn, job_id, claim_import(dsn, job_id), store, batch_bytes=batch_bytes).run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["checkpoint"]["rejects_uri"] == row["result"]["rejects_uri"] == mine
    assert records(mine) == ["p3,x"]
    assert rejects_objects(store) == [storage.parse(mine).path]


def test_a_pruned_import_whose_result_a_retry_cleared_deletes_its_rejects(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    """A failed import with rejects, retried and then canceled before it ran: its
    result (which named the object) is gone, its checkpoint still names it, and
    pruning the job deletes it rather than leaving the rejected records in
    storage for good."""
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    store = f"file://{tmp_path}/store"
    job_id = submit_import(conn, f"file://{source(folder, 'a')}", "1", {"max_rejects": 1})
    Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
    uri = job(conn, job_id)["result"]["rejects_uri"]
    assert storage.exists(uri)
    conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    row = job(conn, job_id)
    assert row["status"] == "canceled" and row["result"] is None
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'")
    summary = conn.execute("SELECT pgjobs.prune('1 day')").fetchone()
    assert summary is not None and summary[0]["objects_queued"] == 1
    Worker(dsn, store, once=True, poll=0.1, stale_after=timedelta(hours=1)).run()
    assert not storage.exists(uri)


def test_a_retry_that_ends_with_no_rejects_empties_its_object(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    """The first attempt fails on too many rejects and writes them; the source
    is fixed in place and the retry (which reads those records again) rejects
    none. The object the job created held the forgotten rejects, named by
    nothing, until pruning: it now holds exactly the job's rejects, none, and
    stays the job's (its checkpoint names it, pruning deletes it)."""
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    store = f"file://{tmp_path}/store"
    path = source(folder, "a")
    job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 1})
    Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
    uri = job(conn, job_id)["result"]["rejects_uri"]
    assert records(uri) == ["a-bad,x", "a-worse,y"]
    path.write_bytes(path.read_bytes().replace(b"a-bad,x", b"a-bad,3")
                     .replace(b"a-worse,y", b"a-worse,4"))
    conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
    Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["rejected"] == 0 and "rejects_uri" not in row["result"]
    assert storage.read(uri) == b""
    assert row["checkpoint"]["rejects_uri"] == uri
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'")
    conn.execute("SELECT pgjobs.prune('1 day')")
    Worker(dsn, store, once=True, poll=0.1, stale_after=timedelta(hours=1)).run()
    assert not storage.exists(uri)


@pytest.fixture(params=["file", "s3", "gs", "az"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/shared"
    fixture = {"s3": "bucket", "gs": "gcs_bucket", "az": "az_container"}[request.param]
    return str(request.getfixturevalue(fixture))


def test_create_writes_only_where_no_object_is(any_store: str) -> None:
    """storage.create, the shared mechanism: a key that holds an object keeps it."""
    store = any_store
    uri = storage.object_location(store, "people/1/1.rejects.jsonl").uri
    assert storage.create(uri, b"first\n")
    assert not storage.create(uri, b"second\n")
    assert storage.read(uri) == b"first\n"
    assert storage.taken(uri)
    # Nothing of the refused attempt is left beside it (a temporary file).
    assert len(storage.list_paths(store)) == 1


def test_memory_storage_creates_conditionally() -> None:
    """memory:// is shared by every database one process serves (tests run
    several): a key there that holds an object keeps it, as on other stores."""
    uri = f"memory://h12-own-{os.urandom(6).hex()}/people/1/1.rejects.jsonl"
    assert storage.create(uri, b"first\n")
    assert not storage.create(uri, b"second\n")
    assert storage.read(uri) == b"first\n"
    assert storage.taken(uri)


def test_create_is_conditional_even_when_the_check_passed(
        any_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers creating one key at once both find it free (storage.taken):
    the write itself is conditional (a hard link, If-None-Match: *), so the
    second keeps the first's object."""
    if any_store.startswith("gs://"):
        pytest.skip("gcp-storage-emulator ignores ifGenerationMatch (GCS itself honours it)")
    monkeypatch.setattr(storage, "taken", lambda uri: False)
    uri = storage.object_location(any_store, "people/1/1.rejects.jsonl").uri
    assert storage.create(uri, b"first\n")
    assert not storage.create(uri, b"second\n")
    assert storage.read(uri) == b"first\n"


@pytest.mark.parametrize("when", ["at_the_look", "after_the_look"])
@pytest.mark.parametrize("free", [True, False], ids=["another_name_free", "every_name_taken"])
def test_a_name_that_holds_another_s_object_is_never_named_nor_written(
        conn: Conn, dsn: str, tmp_path: Path, store: str, when: str, free: bool,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The random name the worker draws holds another database's object,
    found so when the worker looks (storage.taken) or created just after
    (the conditional create refuses, and the name the checkpoint got first is
    un-named: pgjobs.import_rejects_taken). Either way that object is neither
    written over, nor named by the job, nor queued for deletion; the rejects
    go to the next name drawn, or, when every name drawn is taken, the attempt
    fails (retried) naming none."""
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    job_id = submit_import(conn, f"file://{source(folder, 'a')}", "1", {"max_rejects": 5})
    theirs = storage.object_location(store, f"people/1/{job_id}.0badc0de.rejects.jsonl").uri
    assert storage.create(theirs, b"theirs\n")
    drawn = iter(["0badc0de", "feedf00d"] if free else itertools.repeat("0badc0de"))
    monkeypatch.setattr(importer.secrets, "token_hex", lambda n: next(drawn))
    if when == "after_the_look":
        real_taken: Callable[[str], bool] = storage.taken
        monkeypatch.setattr(storage, "taken", lambda uri: uri != theirs and real_taken(uri))
    with caplog.at_level(logging.WARNING, logger="pgjobs"):
        Importer(dsn, job_id, claim_import(dsn, job_id), store).run()
    row = job(conn, job_id)
    assert storage.read(theirs) == b"theirs\n"
    assert any(theirs in r.getMessage() for r in caplog.records)
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_deletions").fetchone() == (0,)
    if not free:
        assert row["status"] != "succeeded"
        assert "every name tried" in row["error"], row["error"]
        assert "rejects_uri" not in (row["checkpoint"] or {})
        assert rejects_objects(store) == [storage.parse(theirs).path]
        return
    assert row["status"] == "succeeded", row["error"]
    mine = row["result"]["rejects_uri"]
    assert mine.endswith(f"/people/1/{job_id}.feedf00d.rejects.jsonl")
    assert row["checkpoint"]["rejects_uri"] == mine
    assert records(mine) == ["a-bad,x", "a-worse,y"]
    conn.execute("UPDATE pgjobs.jobs SET finished_at = now() - interval '2 days'")
    conn.execute("SELECT pgjobs.prune('1 day')")
    Worker(dsn, store, once=True, poll=0.1, stale_after=timedelta(hours=1)).run()
    assert not storage.exists(mine)
    assert storage.read(theirs) == b"theirs\n"


def test_naming_queues_the_name_it_replaces_and_un_naming_queues_none(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    """pgjobs.import_rejects_placed and pgjobs.import_rejects_taken, the shared
    mechanism: a name the checkpoint stops naming by a new name is the job's
    (queued for deletion, once); one un-named as taken is another's (never
    queued); naming the same name again, or un-naming a name the checkpoint
    does not hold, changes nothing."""
    make_people(conn)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    job_id = submit_import(conn, f"file://{source(folder, 'a')}", "1", {"max_rejects": 5})
    worker = claim_import(dsn, job_id)

    def call(verb: str, uri: str) -> tuple[Any, list[str]]:
        done = conn.execute(f"SELECT pgjobs.import_rejects_{verb}(%s, %s, %s)",
                            (job_id, worker, uri)).fetchone()
        queued = [r[0] for r in conn.execute(
            "SELECT uri FROM pgjobs.storage_deletions WHERE job_id = %s ORDER BY id",
            (job_id,))]
        assert done == (True,)
        return (job(conn, job_id)["checkpoint"] or {}).get("rejects_uri"), queued

    assert call("placed", "file:///a/1.aaaaaaaa.rejects.jsonl") == (
        "file:///a/1.aaaaaaaa.rejects.jsonl", [])
    assert call("placed", "file:///a/1.aaaaaaaa.rejects.jsonl") == (
        "file:///a/1.aaaaaaaa.rejects.jsonl", [])
    # Replaced before the job created it (recorded: pgjobs.import_rejects_created),
    # a name is never queued: it may hold another's object.
    assert call("placed", "file:///a/1.eeeeeeee.rejects.jsonl") == (
        "file:///a/1.eeeeeeee.rejects.jsonl", [])
    assert call("placed", "file:///a/1.aaaaaaaa.rejects.jsonl") == (
        "file:///a/1.aaaaaaaa.rejects.jsonl", [])
    assert call("created", "file:///a/1.aaaaaaaa.rejects.jsonl") == (
        "file:///a/1.aaaaaaaa.rejects.jsonl", [])
    assert call("placed", "file:///b/1.bbbbbbbb.rejects.jsonl") == (
        "file:///b/1.bbbbbbbb.rejects.jsonl", ["file:///a/1.aaaaaaaa.rejects.jsonl"])
    assert call("taken", "file:///b/1.cccccccc.rejects.jsonl") == (
        "file:///b/1.bbbbbbbb.rejects.jsonl", ["file:///a/1.aaaaaaaa.rejects.jsonl"])
    assert call("taken", "file:///b/1.bbbbbbbb.rejects.jsonl") == (
        None, ["file:///a/1.aaaaaaaa.rejects.jsonl"])
    assert call("placed", "file:///b/1.dddddddd.rejects.jsonl") == (
        "file:///b/1.dddddddd.rejects.jsonl", ["file:///a/1.aaaaaaaa.rejects.jsonl"])
    for verb in ("placed", "taken", "created"):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            conn.execute(f"SELECT pgjobs.import_rejects_{verb}(%s, %s, '')", (job_id, worker))
        assert refused.value.diag.message_hint
