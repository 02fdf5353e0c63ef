"""An outside checker's pass over imports as a class (h185): whatever the
source's shape (line ends, a byte-order mark, a last line without its end, a
quoted newline, bytes that are not UTF-8), whatever its batch boundaries,
`on_duplicate` mode and format, and whether the worker ran it in one go, was
stopped between batches, or died between batches (its lease lapsing), a job
that succeeded says what the table and its rejects hold:

- every record read is inserted, updated, skipped or rejected, once
  (`inserted + updated + skipped + rejected == records`);
- the scope gained exactly `inserted` rows, each a good record's, in the
  job's scope; no row of another tenant is written or changed, whichever
  of its keys or scope spellings the source names;
- `pgjobs.import_rejects` and the rejects object hold exactly the rejected
  records (line, reason, record), `rejected` of them, none twice;
- `bytes` is the source's size.

Earlier passes hold the single shapes (tests/test_adversarial_import.py,
tests/test_import_resume.py, tests/test_import_rejects*.py); this crosses
them, since a count that is right for one batch and one attempt can be
wrong at a boundary or after a resume."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import db, queries
from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import (
    allowed_folder,
    claim_import,
    drop_client,
    expire_lease,
    job,
    people_client,
    submit_import,
)
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]

# Tenant 2's rows: their keys are named by the source; they must not change.
THEIRS = "INSERT INTO people (id, tenant, name, age, data) VALUES" \
         " (1, 2, 'theirs', 40, '{\"k\": 1}'), (2, 2, 'theirs2', 41, '{}')"
# Tenant 1's own row, key 3: the source names it again (a duplicate of the job's scope).
MINE = "INSERT INTO people (id, tenant, name, age) VALUES (3, 1, 'old', 1)"


def _records() -> list[tuple[str, dict[str, Any], str]]:
    """(kind, record, outcome) in source order; outcome is "new", "dup" (tenant
    1's key 3), "other" (tenant 2's key: never touched) or "bad" (rejected in
    every mode)."""
    out: list[tuple[str, dict[str, Any], str]] = []
    for i in range(40):
        out.append(("good", {"id": 100 + i, "name": f"n{i}", "age": i}, "new"))
        if i == 5:
            out.append(("bad age", {"id": 200, "name": "b1", "age": "x"}, "bad"))
        if i == 9:
            out.append(("other tenant", {"id": 201, "tenant": 2, "name": "b2", "age": 1}, "bad"))
        if i == 12:
            out.append(("own tenant spelt 01", {"id": 202, "tenant": "01", "name": "s1",
                                                "age": 2}, "new"))
        if i == 13:
            out.append(("scope null", {"id": 205, "tenant": None, "name": "s2", "age": 4},
                        "new"))
        if i == 14:
            out.append(("quoted newline", {"id": 203, "name": "two\nlines, \"q\"", "age": 3},
                        "new"))
        if i == 17:
            out.append(("their key", {"id": 1, "name": "mine", "age": 5}, "other"))
        if i == 21:
            out.append(("own key", {"id": 3, "name": "again", "age": 6}, "dup"))
        if i == 25:
            out.append(("negative age", {"id": 204, "name": "b3", "age": -1}, "bad"))
        if i == 30:
            out.append(("their other key", {"id": 2, "tenant": 1, "name": "m2", "age": 7},
                        "other"))
    return out


def _csv(records: list[dict[str, Any]], crlf: bool, bom: bool, last_end: bool) -> bytes:
    cols = ["id", "tenant", "name", "age"]
    end = "\r\n" if crlf else "\n"

    def field(v: Any) -> str:
        if v is None:
            return ""
        s = str(v)
        return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n\r') else s

    lines = [",".join(cols)] + [",".join(field(r.get(c)) for c in cols) for r in records]
    text = end.join(lines) + (end if last_end else "")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def _jsonl(records: list[dict[str, Any]], crlf: bool, last_end: bool) -> bytes:
    end = "\r\n" if crlf else "\n"
    text = end.join(json.dumps(r) for r in records) + (end if last_end else "")
    return text.encode()


SHAPES = {
    "csv lf": ("csv", dict(crlf=False, bom=False, last_end=True)),
    "csv bom, no last end": ("csv", dict(crlf=False, bom=True, last_end=False)),
    "csv crlf, no last end": ("csv", dict(crlf=True, bom=False, last_end=False)),
    "jsonl lf": ("jsonl", dict(crlf=False, last_end=True)),
    "jsonl crlf, no last end": ("jsonl", dict(crlf=True, last_end=False)),
}

# How the job runs: one attempt; stopped (released) after 2 batches and resumed;
# killed after 2 batches (the worker dies, its lease lapses) and taken over.
# Killed inside batch 3 too: its records staged (COPY done), or import_batch
# done (rows, checkpoint, rejects written) and the transaction not committed.
RUNS = ["once", "released", "killed", "killed after its copy", "killed before its commit"]


def _die_after_batches(dsn: str, job_id: int, worker: str, store: str,
                       batch: int, batches: int, step: str = "committed") -> None:
    """A forked worker that dies (os._exit: no release, no cleanup) at `step` of
    batch `batches` + 1: "committed" (right after batch `batches` committed: the
    kill between two batches), "staged" (its records copied into the staging
    table, pgjobs.import_batch not yet called) or "inserted" (import_batch
    returned: rows, checkpoint and rejects written, not committed)."""
    seen: list[int] = []
    calls: list[str] = []
    one = db.one

    def dying_one(conn: Any, sql: Any, params: Any = None) -> Any:
        if sql is not queries.IMPORT_BATCH:
            return one(conn, sql, params)
        calls.append(step)
        if len(calls) == batches + 1 and step == "staged":
            os._exit(9)
        out = one(conn, sql, params)
        if len(calls) == batches + 1 and step == "inserted":
            os._exit(9)
        return out

    def progress(records: int, read: int, total: int | None) -> None:
        seen.append(records)
        if len(seen) == batches and step == "committed":
            os._exit(9)

    db.one = dying_one  # type: ignore[assignment]  # the forked child's module alone

    Importer(dsn, job_id, worker, store, on_progress=progress, batch_bytes=batch).run()
    os._exit(0)


# The unique indexes: (tenant, id) and id alone (the import's arbiter is (tenant,
# id): a key of another tenant's row violates the other, and is rejected in every
# mode), or id alone (the arbiter: such a record counts as skipped, never touched).
INDEXES = ["scope and key, key", "key only"]


@pytest.fixture
def tenant(request: pytest.FixtureRequest, conn: Conn,
           tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A client confined to tenant 1, an allowed folder, tenant 2's rows and one
    of tenant 1's; the unique indexes INDEXES[0] unless parametrized."""
    folder = allowed_folder(conn, tmp_path)
    role = people_client(conn, "h185")
    if getattr(request, "param", INDEXES[0]) == "key only":
        conn.execute("DROP INDEX people_tenant_id")
        conn.execute("CREATE INDEX people_tenant_id ON people (tenant, id)")
    conn.execute("CREATE UNIQUE INDEX people_id_only ON people (id)")
    conn.execute(THEIRS)
    conn.execute(MINE)
    conn.execute("SELECT setval(pg_get_serial_sequence('people', 'id'), 1000)")
    yield role, folder
    drop_client(conn, role)


def _interrupt(dsn: str, conn: Conn, job_id: int, store: str, how: str, batch: int,
               batches: int = 2) -> None:
    """Run job_id's first attempt for `batches` batches of about `batch` bytes, then
    end it `how`: "released" (stopped: it hands the job back) or "killed" (a
    forked worker dies with no word; its lease is then made to lapse)."""
    if how.startswith("killed"):
        step = {"killed": "committed", "killed after its copy": "staged",
                "killed before its commit": "inserted"}[how]
        child = multiprocessing.get_context("fork").Process(
            target=_die_after_batches,
            args=(dsn, job_id, claim_import(dsn, job_id), store, batch, batches, step))
        child.start()
        child.join(120)
        assert child.exitcode == 9
        assert job(conn, job_id)["status"] == "running"
        expire_lease(conn, job_id)
        return
    assert how == "released", how
    stop = threading.Event()
    seen: list[int] = []

    def progress(records: int, read: int, total: int | None) -> None:
        seen.append(records)
        if len(seen) == batches:
            stop.set()

    assert Importer(dsn, job_id, claim_import(dsn, job_id), store, stop=stop,
                    on_progress=progress, batch_bytes=batch).run().status == "released"


def _run(dsn: str, conn: Conn, job_id: int, store: str, how: str, batch: int) -> None:
    if how == "once":
        Importer(dsn, job_id, claim_import(dsn, job_id), store, batch_bytes=batch).run()
        return
    _interrupt(dsn, conn, job_id, store, how, batch)
    # Two batches committed, the rest not: the successor resumes mid-source.
    assert 0 < int((job(conn, job_id)["checkpoint"] or {}).get("records", 0)) < len(_records())
    # The successor reads in batches of another size: other boundaries.
    Importer(dsn, job_id, claim_import(dsn, job_id), store, batch_bytes=batch * 3).run()


# Every shape in one go under both index shapes; the resumed runs over three
# shapes (the line ends, the BOM, JSON Lines), so the file stays short.
CASES = [(shape, how, index) for shape in sorted(SHAPES) for how in RUNS for index in INDEXES
         if how == "once" or (index == INDEXES[0] and shape != "csv lf" and shape != "jsonl lf")]


@pytest.mark.parametrize("mode", ["error", "skip", "update"])
@pytest.mark.parametrize(("shape", "how", "tenant"), CASES, indirect=["tenant"])
def test_a_succeeded_import_says_what_the_table_and_rejects_hold(
        conn: Conn, dsn: str, tenant: tuple[str, Path], shape: str, mode: str,
        how: str) -> None:
    role, folder = tenant
    fmt, kw = SHAPES[shape]
    recs = _records()
    data = (_csv([r for _, r, _ in recs], **kw) if fmt == "csv"
            else _jsonl([r for _, r, _ in recs], **kw))
    path = folder / f"s.{fmt}"
    path.write_bytes(data)
    theirs = conn.execute("SELECT * FROM people WHERE tenant <> 1 ORDER BY id").fetchall()
    before = conn.execute("SELECT count(*) FROM people WHERE tenant = 1").fetchone()
    assert before is not None
    with acting_as(conn, role, scopes="1"):
        job_id = submit_import(conn, f"file://{path}", "1",
                               {"on_duplicate": mode, "max_rejects": 100,
                                "max_attempts": 5})
    _run(dsn, conn, job_id, f"file://{folder}/store", how, batch=200)
    row = job(conn, job_id)
    r = row["result"] or {}

    # Another tenant's rows are untouched whatever the mode and the outcome.
    assert conn.execute("SELECT * FROM people WHERE tenant <> 1 ORDER BY id").fetchall() \
        == theirs
    # Their keys are rejected or skipped (never touched); key 3 is rejected under `error`.
    key_only = "people_tenant_id" not in {
        n for (n,) in conn.execute("SELECT indexrelid::regclass::text FROM pg_index"
                                   " WHERE indrelid = 'people'::regclass AND indisunique")}
    other_rejected = mode == "error" or not key_only
    assert row["status"] == "succeeded", row["error"]
    assert r["records"] == len(recs)
    assert r["inserted"] + r.get("updated", 0) + r["skipped"] + r["rejected"] == r["records"], r
    assert r["bytes"] == len(data)

    after = conn.execute("SELECT count(*) FROM people WHERE tenant = 1").fetchone()
    assert after is not None
    assert after[0] - before[0] == r["inserted"]
    names = {n for (n,) in conn.execute("SELECT name FROM people WHERE tenant = 1")}
    new = {rec["name"] for _, rec, o in recs if o == "new"}
    assert new <= names
    assert r["inserted"] == len(new)
    bad = [kind for kind, _, o in recs
           if o == "bad" or (o == "dup" and mode == "error") or (o == "other" and other_rejected)]
    assert r["rejected"] == len(bad), (r, bad)
    own = conn.execute("SELECT name FROM people WHERE id = 3").fetchone()
    assert own == (("again",) if mode == "update" else ("old",))
    others_skipped = 0 if other_rejected else 2
    if mode == "skip":
        assert r["skipped"] == 1 + others_skipped
    if mode == "update":
        assert (r["updated"], r["skipped"]) == (1, others_skipped)

    # The rejects: the table and the object hold the same records, once each.
    kept = conn.execute("SELECT line, reason, record FROM pgjobs.import_rejects"
                        " WHERE job_id = %s ORDER BY line", (job_id,)).fetchall()
    assert len(kept) == r["rejected"] == len({k[0] for k in kept})
    if r["rejected"]:
        obj = [json.loads(x) for x in storage.read(r["rejects_uri"]).splitlines()]
        assert [(o["line"], o["reason"], o["record"]) for o in obj] == [tuple(k) for k in kept]
        assert len(storage.read(r["rejects_uri"])) == r["rejects_bytes"]
    # No rejected reason reveals tenant 2's row (its name or document).
    assert not any("theirs" in str(k[1]) or '"k"' in str(k[1]) for k in kept)


# Sources at the edges: (format, bytes, records, inserted, rejected).
EDGES: dict[str, tuple[str, bytes, int, int, int]] = {
    "csv empty header only": ("csv", b"name,age\n", 0, 0, 0),
    "csv header without its end": ("csv", b"name,age", 0, 0, 0),
    "csv bom and header only": ("csv", b"\xef\xbb\xbfname,age\r\n", 0, 0, 0),
    "csv blank lines": ("csv", b"name,age\n\n\na,1\n\n", 1, 1, 0),
    "csv quoted newlines everywhere": ("csv", b'name,age\n"a\nb",1\n"\n",2\n"c\r\n\r\nd",3\n'
                                       b'"""\n""",4', 4, 4, 0),
    "csv not utf-8": ("csv", b"name,age\nok,1\nbad\xff\xfe,2\nok2,3\n", 3, 2, 1),
    "csv nul": ("csv", b"name,age\nok,1\nb\x00d,2\nok2,3", 3, 2, 1),
    "csv huge line": ("csv", b"name,age\n" + b"x" * 3_000_000 + b",1\nsmall,2\n", 2, 2, 0),
    "csv bad last without end": ("csv", b"name,age\nok,1\nbad,x", 2, 1, 1),
    "jsonl empty": ("jsonl", b"", 0, 0, 0),
    "jsonl blank lines": ("jsonl", b"\n\r\n\n", 0, 0, 0),
    "jsonl not utf-8": ("jsonl", b'{"name": "ok"}\n{"name": "b\xffd"}\n{"name": "ok2"}', 3, 2, 1),
    "jsonl bad last without end": ("jsonl", b'{"name": "ok"}\n{"age": "x"}', 2, 1, 1),
    "jsonl huge line": ("jsonl", b'{"name": "' + b"y" * 3_000_000 + b'"}\n{"name": "s"}\n',
                        2, 2, 0),
}


@pytest.mark.parametrize("batch", [1, 1 << 20], ids=["record a batch", "one batch"])
@pytest.mark.parametrize("edge", sorted(EDGES))
def test_an_edge_source_is_counted_as_the_table_and_rejects_hold(
        conn: Conn, dsn: str, tenant: tuple[str, Path], edge: str, batch: int) -> None:
    role, folder = tenant
    fmt, data, records, inserted, rejected = EDGES[edge]
    path = folder / f"e.{fmt}"
    path.write_bytes(data)
    with acting_as(conn, role, scopes="1"):
        job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 10})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store",
             batch_bytes=batch).run()
    row = job(conn, job_id)
    r = row["result"] or {}
    assert row["status"] == "succeeded", row["error"]
    assert (r["records"], r["inserted"], r["rejected"]) == (records, inserted, rejected), r
    assert r["bytes"] == len(data)
    assert conn.execute("SELECT count(*) FROM people WHERE tenant = 1 AND id <> 3"
                        ).fetchone() == (inserted,)
    kept = conn.execute("SELECT line, reason, record FROM pgjobs.import_rejects"
                        " WHERE job_id = %s ORDER BY line", (job_id,)).fetchall()
    assert len(kept) == rejected
    if rejected:
        obj = [json.loads(x) for x in storage.read(r["rejects_uri"]).splitlines()]
        assert [(o["line"], o["reason"], o["record"]) for o in obj] == [tuple(k) for k in kept]
    else:
        assert not r.get("rejects_uri")


def _change(path: Path, data: bytes, committed: int, how: str) -> None:
    """Change the source between two attempts, `how`; the committed part is the
    first `committed` bytes."""
    header, _, _ = data.partition(b"\n")
    if how == "cut to the committed part":
        os.truncate(path, committed)
    elif how == "grown":
        with path.open("ab") as f:
            f.write(b"late,1\n")
    elif how == "replaced, same size and header":
        other = path.with_suffix(".new")
        other.write_bytes(data[:committed] + data[committed:].replace(b"n", b"m"))
        os.replace(other, path)
    elif how == "rewritten in place, same size":
        with path.open("r+b") as f:
            f.seek(committed)
            f.write(data[committed:].replace(b"n", b"m"))
    else:
        assert how == "rewritten in place, mtime put back"
        st = path.stat()
        with path.open("r+b") as f:
            f.seek(committed)
            f.write(data[committed:].replace(b"n", b"m"))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.read_bytes().startswith(header)


def _numbered(conn: Conn, role: str, path: Path, rows: int,
              options: dict[str, Any] | None = None) -> tuple[Path, bytes, int]:
    """A CSV at `path` of `rows` records n0, n1, ... and its import, submitted by
    `role` into tenant 1: the path, its bytes and the job."""
    data = b"name,age\n" + b"".join(b"n%d,%d\n" % (i, i) for i in range(rows))
    path.write_bytes(data)
    with acting_as(conn, role, scopes="1"):
        return path, data, submit_import(conn, f"file://{path}", "1", options)


CHANGES = ["cut to the committed part", "grown", "replaced, same size and header",
           "rewritten in place, same size", "rewritten in place, mtime put back"]


@pytest.mark.parametrize("how", ["released", "killed"])
@pytest.mark.parametrize("change", CHANGES)
def test_a_source_changed_between_attempts_fails_keeping_only_the_committed_rows(
        conn: Conn, dsn: str, tenant: tuple[str, Path], change: str, how: str) -> None:
    role, folder = tenant
    path, data, job_id = _numbered(conn, role, folder / "c.csv", 60, {"max_attempts": 5})
    store = f"file://{folder}/store"
    _interrupt(dsn, conn, job_id, store, how, 40, batches=1)
    point = job(conn, job_id)["checkpoint"]
    assert 0 < point["records"] < 60
    _change(path, data, int(point["offset"]), change)
    Importer(dsn, job_id, claim_import(dsn, job_id), store, batch_bytes=40).run()
    row = job(conn, job_id)
    names = [n for (n,) in conn.execute("SELECT name FROM people WHERE tenant = 1 AND id <> 3"
                                        " ORDER BY id")]
    assert row["status"] == "failed", (row["status"], names)
    assert "55000" in str(row["error"]) or "changed" in str(row["error"]), row["error"]
    assert names == [f"n{i}" for i in range(point["records"])]


def test_a_source_rewritten_mid_read_with_its_mtime_put_back_fails(
        conn: Conn, dsn: str, tenant: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Within one attempt: the bytes past the first batch rewritten in place at the
    same size, the mtime set back (`touch -d`, `cp -p`, `os.utime`): inode, size
    and mtime all as checkpointed, the read went on in the new bytes."""
    monkeypatch.setattr(storage, "READ_BLOCK", 64)
    role, folder = tenant
    path, data, job_id = _numbered(conn, role, folder / "m.csv", 60)

    def rewrite(records: int, read: int, total: int | None) -> None:
        if not getattr(rewrite, "done", False):
            rewrite.done = True  # type: ignore[attr-defined]
            _change(path, data, read, "rewritten in place, mtime put back")

    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store", batch_bytes=40,
             on_progress=rewrite).run()
    row = job(conn, job_id)
    names = [n for (n,) in conn.execute("SELECT name FROM people WHERE tenant = 1 AND id <> 3")]
    assert row["status"] == "failed", (row["status"], names)
    assert "changed while it was read" in str(row["error"]), row["error"]
    assert all(n.startswith("n") for n in names), names


def test_a_checkpoint_without_a_ctime_resumes_on_the_rest_of_its_version(
        conn: Conn, dsn: str, tenant: tuple[str, Path]) -> None:
    """A file:// version checkpointed by the stop-64 release states no ctime: the
    resume compares what it states (device, inode, size, mtime), and an
    unchanged source finishes; its chmod since (a ctime moved on) is no change
    it can see."""
    role, folder = tenant
    path, data, job_id = _numbered(conn, role, folder / "old.csv", 30)
    store = f"file://{folder}/store"
    _interrupt(dsn, conn, job_id, store, "released", 40, batches=1)
    assert "ctime_ns" in job(conn, job_id)["checkpoint"]["version"]
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = jsonb_set(checkpoint, '{version}',"
                 " (checkpoint->'version') - 'ctime_ns') WHERE id = %s", (job_id,))
    path.chmod(0o644)
    Importer(dsn, job_id, claim_import(dsn, job_id), store, batch_bytes=40).run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["inserted"] == 30


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_worker_whose_lease_lapsed_is_fenced_off_and_nothing_lands_twice(
        conn: Conn, dsn: str, tenant: tuple[str, Path], fmt: str) -> None:
    """Worker A's lease lapses after its first batch; B takes the job over and
    finishes it while A is still inside its run; A's next batch is refused. The
    table holds every record once, and the job's counts are B's whole run."""
    role, folder = tenant
    recs = [{"id": 100 + i, "name": f"n{i}", "age": i} for i in range(40)]
    data = _csv(recs, crlf=False, bom=False, last_end=True) if fmt == "csv" \
        else _jsonl(recs, crlf=False, last_end=True)
    path = folder / f"f.{fmt}"
    path.write_bytes(data)
    with acting_as(conn, role, scopes="1"):
        job_id = submit_import(conn, f"file://{path}", "1", {"on_duplicate": "error"})
    store = f"file://{folder}/store"
    taken: list[str] = []

    def take_over(records: int, read: int, total: int | None) -> None:
        if not taken:
            expire_lease(conn, job_id)
            b = Importer(dsn, job_id, claim_import(dsn, job_id, "b"), store, batch_bytes=70)
            taken.append(b.run().status)

    first = Importer(dsn, job_id, claim_import(dsn, job_id, "a"), store, batch_bytes=40,
                     on_progress=take_over).run()
    assert taken == ["succeeded"]
    assert first.status == "lost", first
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    names = sorted(n for (n,) in conn.execute(
        "SELECT name FROM people WHERE tenant = 1 AND id <> 3"))
    assert names == sorted(r["name"] for r in recs)
    r = row["result"]
    assert (r["records"], r["inserted"], r["rejected"], r["bytes"]) == (40, 40, 0, len(data))


# Why an import stops in its third batch, and how it is put right before a retry.
STOPS = ["a column the submitter may not write", "a bad record past max_rejects"]


@pytest.mark.parametrize("stop", STOPS)
def test_a_failed_import_says_what_its_committed_batches_hold_and_a_retry_ends_exact(
        conn: Conn, dsn: str, tenant: tuple[str, Path], stop: str) -> None:
    """A JSON Lines import stops in a later batch (a column first named there that
    the submitter may not INSERT; a bad record with max_rejects 1, after one
    rejected): the failed job's counts are its committed batches', which the
    table and the rejects hold; once put right, a retry ends with every record
    once and counts over the whole source."""
    role, folder = tenant
    conn.execute(f"REVOKE INSERT ON people FROM {role}")
    conn.execute(f"GRANT INSERT (id, tenant, name) ON people TO {role}")
    lines = [{"id": 100 + i, "name": f"n{i}"} for i in range(30)]
    lines[3] = {"id": 103, "name": "n3", "age": "x"} if stop != STOPS[0] else lines[3]
    lines[20] = {"id": 120, "name": "n20", "age": 5} if stop == STOPS[0] \
        else {"id": 120, "name": "n20", "age": -1}
    if stop != STOPS[0]:
        conn.execute(f"GRANT INSERT (age) ON people TO {role}")
    path = folder / "p.jsonl"
    path.write_bytes(_jsonl(lines, crlf=False, last_end=True))
    with acting_as(conn, role, scopes="1"):
        job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 1})
    store = f"file://{folder}/store"
    Importer(dsn, job_id, claim_import(dsn, job_id), store, batch_bytes=60).run()
    row = job(conn, job_id)
    assert row["status"] == "failed", row["result"]
    # The counts: the result's when records were rejected (it names their
    # object), else the checkpoint's; the rejects kept include the record that
    # failed the job, in the batch rolled back (docs/imports.md, Bad records).
    r = row["result"] or row["checkpoint"]
    held = conn.execute("SELECT count(*) FROM people WHERE tenant = 1 AND id <> 3").fetchone()
    assert held is not None and 0 < held[0] <= 20
    assert r.get("inserted", 0) == held[0], (r, held)
    kept = conn.execute("SELECT line FROM pgjobs.import_rejects WHERE job_id = %s",
                        (job_id,)).fetchall()
    assert len(kept) == r.get("rejected", 0) == (0 if stop == STOPS[0] else 2), r
    if kept:
        assert len(storage.read(row["result"]["rejects_uri"]).splitlines()) == len(kept)
    # Put right: the grant given, or the bad record fixed in place.
    if stop == STOPS[0]:
        conn.execute(f"GRANT INSERT (age) ON people TO {role}")
    else:
        lines[20] = {"id": 120, "name": "n20", "age": 11}  # the same size
        path.write_bytes(_jsonl(lines, crlf=False, last_end=True))
    assert conn.execute("SELECT pgjobs.retry(%s)", (job_id,)).fetchone() == (True,)
    Importer(dsn, job_id, claim_import(dsn, job_id), store, batch_bytes=60).run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    r = row["result"]
    names = sorted(n for (n,) in conn.execute(
        "SELECT name FROM people WHERE tenant = 1 AND id <> 3"))
    rejected = 0 if stop == STOPS[0] else 1
    assert len(names) == len(set(names)) == 30 - rejected
    assert (r["records"], r["inserted"], r["rejected"]) == (30, 30 - rejected, rejected), r
    kept = conn.execute("SELECT line FROM pgjobs.import_rejects WHERE job_id = %s",
                        (job_id,)).fetchall()
    assert len(kept) == rejected


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_generated_column_or_created_at_in_the_source(
        conn: Conn, dsn: str, tenant: tuple[str, Path], fmt: str) -> None:
    """A source naming a generated column: CSV fails before a row is written,
    JSON Lines rejects those records and counts them; a created_at it names is
    the row's (an export re-imported), in the job's scope."""
    role, folder = tenant
    conn.execute("ALTER TABLE people ADD COLUMN twice integer GENERATED ALWAYS AS (age * 2)"
                 " STORED")
    if fmt == "csv":
        data = b"name,age,twice,created_at\na,1,99,2001-02-03 04:05:06+00\n"
    else:
        data = (b'{"name": "a", "age": 1, "created_at": "2001-02-03T04:05:06Z"}\n'
                b'{"name": "b", "age": 2, "twice": 99}\n'
                b'{"name": "c", "age": 3}\n')
    path = folder / f"g.{fmt}"
    path.write_bytes(data)
    with acting_as(conn, role, scopes="1"):
        job_id = submit_import(conn, f"file://{path}", "1", {"max_rejects": 5})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    row = job(conn, job_id)
    got = conn.execute("SELECT tenant, name, twice, created_at::text FROM people"
                       " WHERE id > 3 ORDER BY name").fetchall()
    if fmt == "csv":
        assert row["status"] == "failed" and "twice" in str(row["error"]), row["error"]
        assert got == []
        return
    assert row["status"] == "succeeded", row["error"]
    r = row["result"]
    assert (r["records"], r["inserted"], r["rejected"]) == (3, 2, 1), r
    assert got[0] == (1, "a", 2, "2001-02-03 04:05:06+00")
    assert [g[:3] for g in got] == [(1, "a", 2), (1, "c", 6)]
