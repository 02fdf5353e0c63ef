"""An import's kept rejects have a byte ceiling for clients (h48).

max_rejects_per_job bounds how many rejects a client's import keeps, but each
keeps its record (up to 65,536 characters, so up to 256 KiB of UTF-8) and its
reason: 1000 of them could keep hundreds of MiB in pgjobs.import_rejects.
set_defaults' max_reject_bytes_per_job (16 MiB unless set) now bounds their
bytes: octet_length of each reject's reason plus of its record as kept, summed
over the job's kept rejects (the checkpoint's "reject_bytes"). The batch whose
rejects would pass it fails the job as too many rejects do (22000, the error
naming the bytes and the ceiling, a hint naming the setting); the rejects
before the one that would pass it are kept, so a client's import never keeps
more than the ceiling, exactly. Administrators' imports are not held to it.
Every way a reject is made is covered: a bad value (refused by the target,
CSV and JSONL) and a record the worker refuses before staging (a CSV record
of the wrong field count, a JSONL line that is not JSON); over two rejects
object stores.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgjobs.poller.importer import Importer
from tests.support import (
    allow,
    claim_import,
    expire_lease,
    job,
    make_people,
    scalar,
    submit_import,
)
from tests.support.imports import drop_client, people_client
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]

BAD_EVERY = 4      # data line n (1-based) is bad when n % BAD_EVERY == 0
LINES = 40         # data lines: 10 bad
BATCH_BYTES = 5000  # a few records a batch: the rejects span many batches
KEPT = 4           # the ceiling is set so the first KEPT rejects fit, the next passes it

# (format, how a record is rejected)
KINDS = [("csv", "value"), ("csv", "fields"), ("jsonl", "value"), ("jsonl", "json")]


def source(fmt: str, how: str) -> bytes:
    """LINES records of people; every BAD_EVERY-th is rejected `how`, its name
    long (2000 characters and more, some of them two bytes) so its bytes count."""
    out = [b"name,age\n"] if fmt == "csv" else []
    for n in range(1, LINES + 1):
        bad = n % BAD_EVERY == 0
        name = f"p{n}" + ("é" * (n * 10) + "y" * 2000 if bad else "")
        if fmt == "csv":
            if bad and how == "value":
                out.append(f"{name},x\n".encode())
            elif bad:
                out.append(f"{name},{n},extra\n".encode())
            else:
                out.append(f"{name},{n}\n".encode())
        elif bad and how == "value":
            out.append((json.dumps({"name": name, "age": "x"}) + "\n").encode())
        elif bad:
            out.append(f'{{"name": "{name}", "age": \n'.encode())
        else:
            out.append((json.dumps({"name": name, "age": n}) + "\n").encode())
    return b"".join(out)


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    role = people_client(conn, "rbytes")
    yield role
    drop_client(conn, role)


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory:///rejects-{uuid.uuid4().hex[:12]}/"
    return f"file://{tmp_path}/store"


@pytest.fixture
def folder(conn: Conn, tmp_path: Path) -> Path:
    path = tmp_path / "in"
    path.mkdir()
    allow(conn, f"file://{path}")
    return path


def _set(conn: Conn, **settings: int | None) -> None:
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps(settings),))


def submit_as(conn: Conn, role: str | None, uri: str, options: dict[str, Any]) -> int:
    with acting_as(conn, role):
        return submit_import(conn, uri, "1", options)


def run(dsn: str, job_id: int, store: str) -> str:
    return Importer(dsn, job_id, claim_import(dsn, job_id), store,
                    batch_bytes=BATCH_BYTES).run().status


def sizes(conn: Conn, job_id: int) -> dict[int, int]:
    """Each kept reject's bytes (reason and record as kept), by line."""
    return dict(conn.execute(
        "SELECT line, octet_length(reason) + coalesce(octet_length(record), 0) "
        "FROM pgjobs.import_rejects WHERE job_id = %s ORDER BY line", (job_id,)).fetchall())


def write(folder: Path, fmt: str, how: str) -> str:
    path = folder / f"people.{fmt}"
    path.write_bytes(source(fmt, how))
    return f"file://{path}"


def learn(conn: Conn, dsn: str, store: str, uri: str) -> list[tuple[int, int]]:
    """The (line, bytes) of every reject of `uri`, in line order, from an
    administrator's import of it (which no byte ceiling holds)."""
    admin_job = submit_as(conn, None, uri, {"max_rejects": 1000})
    assert run(dsn, admin_job, store) == "succeeded", job(conn, admin_job)["error"]
    found = sorted(sizes(conn, admin_job).items())
    assert len(found) == LINES // BAD_EVERY
    conn.execute("DELETE FROM people")
    return found


def ceiling_for(found: list[tuple[int, int]]) -> int:
    """A ceiling the first KEPT rejects fit in and the next passes by one byte."""
    return sum(b for _, b in found[:KEPT + 1]) - 1


def assert_failed_at_ceiling(conn: Conn, job_id: int, found: list[tuple[int, int]],
                             ceiling: int) -> None:
    row = job(conn, job_id)
    assert row["status"] == "failed", row["status"]
    first_out = found[KEPT][0]
    error = row["error"]
    assert error.startswith(f"line {first_out}:"), error
    assert f"to {ceiling + 1} bytes" in error and f"ceiling of {ceiling} bytes" in error, error
    assert "max_reject_bytes_per_job" in error and "[22000]" in error, error
    assert 'pgjobs.set_defaults(\'{"max_reject_bytes_per_job": N}\')' in error, error
    # Exactly the rejects before the one that passed it are kept: never more
    # than the ceiling (not one batch's worth more).
    kept = sizes(conn, job_id)
    assert sorted(kept.items()) == found[:KEPT]
    assert sum(kept.values()) <= ceiling


@pytest.mark.parametrize(("fmt", "how"), KINDS, ids=[f"{f}-{h}" for f, h in KINDS])
def test_a_clients_rejects_past_the_byte_ceiling_fail_the_import(
        conn: Conn, dsn: str, folder: Path, store: str, client: str,
        fmt: str, how: str) -> None:
    uri = write(folder, fmt, how)
    found = learn(conn, dsn, store, uri)
    ceiling = ceiling_for(found)
    _set(conn, max_reject_bytes_per_job=ceiling)
    try:
        job_id = submit_as(conn, client, uri, {"max_rejects": 1000})
        assert run(dsn, job_id, store) == "failed"
        assert_failed_at_ceiling(conn, job_id, found, ceiling)
        # An administrator's import of the same source is not held to it.
        admin_job = submit_as(conn, None, uri, {"max_rejects": 1000})
        assert run(dsn, admin_job, store) == "succeeded", job(conn, admin_job)["error"]
        assert sorted(sizes(conn, admin_job).items()) == found
        assert job(conn, admin_job)["checkpoint"]["reject_bytes"] == sum(b for _, b in found)
    finally:
        _set(conn, max_reject_bytes_per_job=None)


@pytest.mark.parametrize("admin", ["superuser", "pgjobs_admin"])
def test_an_administrators_import_is_not_held_to_the_byte_ceiling(
        conn: Conn, dsn: str, folder: Path, store: str, admin: str) -> None:
    role = None
    if admin == "pgjobs_admin":
        role = people_client(conn, "rbytes_admin")
        conn.execute(f"GRANT pgjobs_admin TO {role}")
    else:
        make_people(conn)
    try:
        uri = write(folder, "csv", "value")
        _set(conn, max_reject_bytes_per_job=1)
        job_id = submit_as(conn, role, uri, {"max_rejects": 1000})
        assert run(dsn, job_id, store) == "succeeded", job(conn, job_id)["error"]
        kept = sizes(conn, job_id)
        assert len(kept) == LINES // BAD_EVERY
        assert job(conn, job_id)["checkpoint"]["reject_bytes"] == sum(kept.values()) > 1
    finally:
        _set(conn, max_reject_bytes_per_job=None)
        if role is not None:
            drop_client(conn, role)


class Killed(BaseException):
    """The worker's process dies here: no handler runs."""


# Where the first attempt's worker dies: right after the batch that passed the
# ceiling committed its kept rejects (past the checkpoint, which did not move)
# and before it failed the job; or after an ordinary batch committed.
CRASHES = ["after_refused_batch", "after_ok_batch"]


@pytest.mark.parametrize("crash", CRASHES)
@pytest.mark.parametrize("legacy", [False, True], ids=["checkpointed", "no_reject_bytes"])
def test_a_retry_after_a_crash_counts_the_kept_rejects_exactly(
        conn: Conn, dsn: str, folder: Path, store: str, client: str,
        monkeypatch: pytest.MonkeyPatch, crash: str, legacy: bool) -> None:
    """The rejects a retry forgets (past the checkpoint) are not counted, those
    of committed batches are counted once: with the ceiling then set to exactly
    the bytes of every reject, the retry keeps them all and succeeds, and the
    checkpoint's count is their very bytes. `no_reject_bytes`: the checkpoint
    lost its count (an import in flight from the release before it was kept):
    it is counted once from the rows."""
    uri = write(folder, "csv", "value")
    found = learn(conn, dsn, store, uri)
    total = sum(b for _, b in found)
    ceiling = ceiling_for(found)
    _set(conn, max_reject_bytes_per_job=ceiling)
    try:
        job_id = submit_as(conn, client, uri, {"max_rejects": 1000})
        original = Importer._settle

        def settle_and_die(self: Importer, result: dict[str, Any]) -> None:
            if crash == "after_refused_batch" and result.get("status") == "rejected":
                raise Killed()
            if crash == "after_ok_batch" and result.get("rejected", 0) >= 2:
                raise Killed()
            original(self, result)

        original_fail = Importer._fail

        def no_handler(self: Importer, exc: BaseException) -> Any:
            if isinstance(exc, Killed):
                raise exc
            return original_fail(self, exc)

        with monkeypatch.context() as patched:
            patched.setattr(Importer, "_settle", settle_and_die)
            patched.setattr(Importer, "_fail", no_handler)
            with pytest.raises(Killed):
                run(dsn, job_id, store)
        row = job(conn, job_id)
        assert row["status"] == "running"
        if crash == "after_refused_batch":
            # The refused batch's rejects are kept past the checkpoint.
            assert sorted(sizes(conn, job_id).items()) == found[:KEPT]
            assert row["checkpoint"]["reject_bytes"] <= sum(b for _, b in found[:KEPT])
        if legacy:
            conn.execute("UPDATE pgjobs.jobs SET checkpoint = checkpoint - 'reject_bytes' "
                         "WHERE id = %s", (job_id,))
        expire_lease(conn, job_id)
        conn.execute("SELECT pgjobs.prune()")  # rescued: retried
        assert job(conn, job_id)["status"] == "queued"
        conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
        # Under the same ceiling the retry fails where the first attempt would have.
        assert run(dsn, job_id, store) == "failed"
        assert_failed_at_ceiling(conn, job_id, found, ceiling)
        # Raised to exactly the bytes of every reject: a retry that counted a
        # forgotten reject twice would pass it.
        _set(conn, max_reject_bytes_per_job=total)
        conn.execute("SELECT pgjobs.retry(%s)", (job_id,))
        assert run(dsn, job_id, store) == "succeeded", job(conn, job_id)["error"]
        row = job(conn, job_id)
        assert sorted(sizes(conn, job_id).items()) == found
        assert row["checkpoint"]["reject_bytes"] == total
        assert row["result"]["rejected"] == len(found)
        assert scalar(conn, "SELECT count(*) FROM people") == LINES - len(found)
    finally:
        _set(conn, max_reject_bytes_per_job=None)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "\"10\"", "true", "[]", "2147483648"])
def test_a_bad_reject_bytes_ceiling_is_refused(conn: Conn, value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="max_reject_bytes_per_job"):
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                     (f'{{"max_reject_bytes_per_job": {value}}}',))
    assert "max_reject_bytes_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")
    _set(conn, max_reject_bytes_per_job=1)  # a good one is stored, and null resets it
    assert scalar(conn, "SELECT pgjobs._defaults() ->> 'max_reject_bytes_per_job'") == "1"
    _set(conn, max_reject_bytes_per_job=2147483647)
    _set(conn, max_reject_bytes_per_job=None)
    assert "max_reject_bytes_per_job" not in scalar(conn, "SELECT pgjobs._defaults()")


def test_the_hint_of_set_defaults_lists_the_reject_bytes_ceiling(conn: Conn) -> None:
    with pytest.raises(errors.InvalidParameterValue) as info:
        conn.execute("SELECT pgjobs.set_defaults('{\"no_such\": 1}')")
    assert "max_reject_bytes_per_job (integer 1 to 2147483647" in (
        info.value.diag.message_hint or "")

