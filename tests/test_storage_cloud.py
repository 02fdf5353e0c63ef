"""az:// and gs:// for real: exports and imports over each cloud's wire protocol,
against servers started by the suite (tests/support/storage.py) and configured
through the variables an operator sets: Azurite (Azure Blob, AZURE_STORAGE_*)
and gcp-storage-emulator (the GCS JSON API, STORAGE_EMULATOR_HOST as Google's
client reads it).

The shared tests run over both (ids ``az`` and ``gs``): byte-identical to a plain
COPY, resumed by another process after a SIGKILL, nothing left behind, the
sweep, lost parts starting over exactly, a missing container or bucket failing
once with a hint, and imports in ranged reads with a resume. How each keeps its
parts differs and is asserted per backend: with an account key (or SAS) an Azure
export stages each part as a block of the blob itself and commits the block
list at the end (poller/azblob.py; other credentials stage hidden blobs); a GCS
export writes each part as a hidden object and joins them with server-side
compose (in a tree past 32 parts; poller/gcs.py). Tests of one backend only
carry its name."""

# Fixtures are requested by name (tests/support/storage.py, registered by conftest).

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import obstore
import psycopg
import pytest
import requests

from pgjobs.poller import azblob, storage
from pgjobs.poller.importer import Importer
from pgjobs.poller.worker import Worker
from tests.support import (
    LONG_LEASE,
    allow,
    checkpoint_parts,
    claim_import,
    content,
    expire_leases,
    job,
    leftovers,
    make_items,
    make_people,
    object_bytes,
    plain_copy,
    run_export,
    start_worker,
    submit_export,
    submit_import,
    wait_for,
)

Conn = psycopg.Connection[Any]
MANY_PARTS = {"chunk_rows": 5, "part_size": 1024}
REFERENCE = "SELECT * FROM items WHERE tenant = 1 ORDER BY id"


def _put_obstore(uri: str, data: bytes) -> None:
    loc = storage.parse(uri)
    obstore.put(storage.store_for(loc), loc.path, data)


@dataclass(frozen=True)
class Cloud:
    """One emulated cloud: its fixtures, how a test writes an object there, and
    what a missing container or bucket looks like."""

    name: str  # "az" or "gs": also the test id
    prefix_fixture: str  # a fresh container/bucket prefix, environment set
    env_fixture: str  # the environment only
    put: Callable[[str, bytes], None]
    missing: str  # a destination whose container or bucket does not exist
    missing_says: tuple[str, ...]  # what its one-line error must name


CLOUDS = [
    Cloud("az", "az_container", "az_env", _put_obstore, "az://no-such-container/exports/",
          ("no-such-container", "ContainerNotFound", "check the container name")),
    Cloud("gs", "gcs_bucket", "gcs_env", storage.write, "gs://no-such-bucket-pgjobs/exports/",
          ("no-such-bucket-pgjobs", "check the bucket name")),
]


@pytest.fixture(params=CLOUDS, ids=[c.name for c in CLOUDS])
def cloud(request: pytest.FixtureRequest) -> Cloud:
    return cast(Cloud, request.param)


@pytest.fixture
def prefix(cloud: Cloud, request: pytest.FixtureRequest) -> str:
    """The export/import destination of ``cloud`` (its emulator started, or the
    test skipped when that emulator is not installed)."""
    return str(request.getfixturevalue(cloud.prefix_fixture))


def _others(conn: Conn, job_id: int) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT result->>'uri' FROM pgjobs.jobs WHERE id <> %s AND result ? 'uri'", (job_id,))}


def _kill_after_parts(dsn: str, prefix: str, conn: Conn, job_id: int, parts: int,
                      delay: float) -> None:
    """A worker that writes at least ``parts`` parts of ``job_id`` and is SIGKILLed;
    its lease lapses once it is gone (_second_worker_finishes)."""
    first = start_worker(dsn, prefix, "--once", "--lease", LONG_LEASE,
                         delays=f"part={delay:.3f}")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= parts, what=f"{parts} parts")
    finally:
        first.kill()
        first.communicate(timeout=10)


def _second_worker_finishes(dsn: str, prefix: str, conn: Conn, job_id: int) -> dict[str, Any]:
    expire_leases(conn, job_id)
    second = start_worker(dsn, prefix, "--once")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    done = job(conn, job_id)
    assert done["status"] == "succeeded", done["error"]
    return done


# --- both clouds ---------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"format": "jsonl", "gzip": True}],
                         ids=["csv", "jsonl-gzip"])
def test_export_is_byte_identical_and_leaves_nothing(
        conn: Conn, dsn: str, cloud: Cloud, prefix: str, options: dict[str, Any]) -> None:
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, **options})
    outcome = run_export(dsn, job_id, prefix)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None and outcome.result["uri"].startswith(prefix)
    assert outcome.result["parts"] >= 2
    if options:
        rows = [json.loads(line) for line in content(outcome.result).splitlines()]
        assert [r["id"] for r in rows] == [r[0] for r in conn.execute(
            "SELECT id FROM items WHERE tenant = 1 ORDER BY id")]
    else:
        assert object_bytes(outcome.result) == plain_copy(conn, REFERENCE)
    upload = job(conn, job_id)["checkpoint"]["upload"]
    if cloud.name == "az":
        assert upload.get("blocks") and upload.get("runs"), upload  # native blocks
        assert "staging" not in upload
    else:
        assert upload.get("staging") and upload.get("runs"), upload  # parts by name
    assert leftovers(prefix, {outcome.result["uri"]}) == []


def test_sigkill_mid_stream_then_another_worker_resumes(
        conn: Conn, dsn: str, cloud: Cloud, prefix: str) -> None:
    make_items(conn, rows=900)
    expected_id = submit_export(conn, "1", {}, MANY_PARTS)
    expected = run_export(dsn, expected_id, prefix)
    assert expected.result is not None
    parts = int(expected.result["parts"])
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    _kill_after_parts(dsn, prefix, conn, job_id, parts // 2, min(0.3, 3 / parts))
    before = job(conn, job_id)["checkpoint"]["upload"]
    assert before["runs"], before
    if cloud.name == "az":
        assert before["blocks"], before
    done = _second_worker_finishes(dsn, prefix, conn, job_id)
    assert object_bytes(done["result"]) == object_bytes(expected.result)
    assert object_bytes(done["result"]) == plain_copy(conn, REFERENCE)
    history = done["checkpoint"]["history"]
    assert len(history) >= 2 and history[-1]["part"] > 0, history  # continued
    # The first owner's staged parts (Azure: blocks) were reused, not rewritten.
    assert done["checkpoint"]["upload"]["runs"][0] == before["runs"][0]
    if cloud.name == "az":
        assert done["checkpoint"]["upload"]["blocks"]
    assert leftovers(prefix, {done["result"]["uri"], *_others(conn, job_id)}) == []


def test_sweep_removes_staged_parts_of_ended_jobs(
        conn: Conn, dsn: str, cloud: Cloud, prefix: str) -> None:
    make_items(conn, rows=30)
    ended = submit_export(conn, "1")
    running = submit_export(conn, "1")
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() "
                 "WHERE id = %s", (ended,))
    for job_id in (ended, running):
        loc = storage.parse(prefix)
        cloud.put(f"{loc.base}/{storage.staging_path(prefix, job_id)}t/000001", b"part")
    worker = Worker(dsn, prefix, once=True, stale_after=timedelta(0))
    worker._connect()
    try:
        assert worker.housekeeping()["swept"] == 1
    finally:
        worker._close()
    left = leftovers(prefix, set())
    assert [p.rsplit("/", 3)[-3] for p in left] == [str(running)]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_import_in_ranged_reads_and_resume(
        conn: Conn, dsn: str, cloud: Cloud, prefix: str, monkeypatch: pytest.MonkeyPatch,
        gz: bool) -> None:
    make_people(conn)
    base = prefix.rstrip("/")
    allow(conn, base)
    body = b"name,age\n" + b"".join(f'"n{i}, ""q""",{i % 50}\n'.encode() for i in range(4000))
    uri = f"{base}/in/p.csv" + (".gz" if gz else "")
    cloud.put(uri, gzip.compress(body) if gz else body)
    monkeypatch.setattr(storage, "READ_BLOCK", 7001)  # many ranged GETs
    job_id = submit_import(conn, uri, "1", {"max_rejects": 1})
    stop = threading.Event()
    seen: list[int] = []

    def progress(records: int, read: int, total: int | None) -> None:
        seen.append(records)
        if len(seen) == 2:
            stop.set()

    first = Importer(dsn, job_id, claim_import(dsn, job_id), prefix, stop=stop,
                     on_progress=progress, batch_bytes=9000).run()
    assert first.status == "released", first.error
    second = Importer(dsn, job_id, claim_import(dsn, job_id), prefix,
                      batch_bytes=20000).run()
    assert second.status == "succeeded", second.error
    names = [r[0] for r in conn.execute("SELECT name FROM people")]
    assert sorted(names) == sorted(f'n{i}, "q"' for i in range(4000))
    assert job(conn, job_id)["result"]["rows"] == 4000


def test_import_rejects_object_goes_to_the_worker_storage(
        conn: Conn, dsn: str, cloud: Cloud, prefix: str) -> None:
    make_people(conn)
    base = prefix.rstrip("/")
    allow(conn, base)
    cloud.put(f"{base}/in/r.jsonl", b'{"name": "a"}\n{"age": "x"}\nnot json\n')
    job_id = submit_import(conn, f"{base}/in/r.jsonl", "1", {"max_rejects": 2})
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), prefix).run()
    assert outcome.status == "succeeded", outcome.error
    assert outcome.result is not None
    uri = outcome.result["rejects_uri"]
    assert uri.startswith(base + "/people/1/")
    assert [json.loads(x)["line"] for x in storage.read(uri).splitlines()] == [2, 3]


def test_missing_container_or_bucket_fails_once_with_a_hint(
        conn: Conn, dsn: str, cloud: Cloud, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(cloud.env_fixture)
    make_items(conn, rows=30)
    outcome = run_export(dsn, submit_export(conn, "1"), cloud.missing)
    assert outcome.status == "failed", outcome
    row = conn.execute("SELECT status, attempts, error FROM pgjobs.jobs ORDER BY id DESC "
                       "LIMIT 1").fetchone()
    assert row is not None and row[0] == "failed", row  # not retried
    assert "Traceback" not in row[2]
    for says in cloud.missing_says:
        assert says in row[2], (says, row[2])


def _lose_azure_blocks(conn: Conn, prefix: str, job_id: int) -> None:
    """Uncommitted blocks can vanish (7 days, or a commit by someone else)."""
    loc = storage.parse(job(conn, job_id)["checkpoint"]["uri"])
    blob_path, container = loc.path, loc.base.split("://", 1)[1]
    blob = azblob.service().get_blob_client(container, blob_path)
    blob.commit_block_list([])  # discards every uncommitted block
    blob.delete_blob()


def _lose_gcs_parts(conn: Conn, prefix: str, job_id: int) -> None:
    """Part objects deleted under a paused export (a lifecycle rule, by hand)."""
    loc = storage.parse(prefix)
    assert storage.delete_prefix(loc, storage.staging_path(prefix, job_id)) >= 3


def test_lost_parts_start_the_export_over_byte_identical(
        conn: Conn, dsn: str, cloud: Cloud, prefix: str) -> None:
    """Parts lost under a paused export: the next owner finds them missing
    (Azure: in Get Block List), starts over, and still writes the exact object."""
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    _kill_after_parts(dsn, prefix, conn, job_id, 3, 0.3)
    uri = job(conn, job_id)["checkpoint"]["uri"]
    {"az": _lose_azure_blocks, "gs": _lose_gcs_parts}[cloud.name](conn, prefix, job_id)
    done = _second_worker_finishes(dsn, prefix, conn, job_id)
    if cloud.name == "az":
        assert done["result"]["uri"].endswith(storage.parse(uri).path)
    assert done["checkpoint"]["history"][-1]["part"] == 0, done["checkpoint"]["history"]
    assert object_bytes(done["result"]) == plain_copy(conn, REFERENCE)
    if cloud.name == "gs":
        assert leftovers(prefix, {done["result"]["uri"], *_others(conn, job_id)}) == []


# --- Azure only ----------------------------------------------------------------


def test_azure_without_a_key_or_sas_exports_stage_their_parts(
        conn: Conn, dsn: str, az_container: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The staged path stays for credentials only obstore handles (Azure AD)."""
    monkeypatch.setattr(azblob, "service", lambda: None)
    make_items(conn, rows=900)
    job_id = submit_export(conn, "1", {}, MANY_PARTS)
    outcome = run_export(dsn, job_id, az_container)
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    assert object_bytes(outcome.result) == plain_copy(conn, REFERENCE)
    upload = job(conn, job_id)["checkpoint"]["upload"]
    assert upload.get("staging") and upload.get("runs"), upload  # the staged path
    assert leftovers(az_container, {outcome.result["uri"]}) == []


def test_azure_presigned_url_of_an_export_reads_the_object(
        conn: Conn, dsn: str, az_container: str) -> None:
    make_items(conn, rows=300)
    outcome = run_export(dsn, submit_export(conn, "1"), az_container)
    assert outcome.result is not None
    url = storage.sign_url(outcome.result["uri"], timedelta(minutes=5))
    assert url.startswith("http://127.0.0.1:") and "sig=" in url
    response = requests.get(url, timeout=30)
    assert response.status_code == 200
    assert response.content == object_bytes(outcome.result)


# --- GCS only ------------------------------------------------------------------


def test_gcs_presigned_url_without_a_signing_key_is_one_clear_error(
        conn: Conn, dsn: str, gcs_bucket: str) -> None:
    """The emulator's anonymous credentials hold no key: signing must say so (with
    a hint), not print a traceback or retry."""
    make_items(conn, rows=30)
    outcome = run_export(dsn, submit_export(conn, "1"), gcs_bucket)
    assert outcome.result is not None
    with pytest.raises(storage.StorageError) as raised:
        storage.sign_url(outcome.result["uri"], timedelta(minutes=5))
    assert not raised.value.retryable
    assert raised.value.hint is not None and "Google credentials" in raised.value.hint


def test_gcs_more_parts_than_one_compose_takes_are_joined_in_a_tree(
        conn: Conn, dsn: str, gcs_bucket: str) -> None:
    """MANY_PARTS gives ~60 parts: past GCS's 32 sources per compose."""
    make_items(conn, rows=900)
    outcome = run_export(dsn, submit_export(conn, "1", {}, MANY_PARTS), gcs_bucket)
    assert outcome.result is not None and outcome.result["parts"] > 32
    assert object_bytes(outcome.result) == plain_copy(conn, REFERENCE)
    assert leftovers(gcs_bucket, {outcome.result["uri"]}) == []


@pytest.mark.parametrize("parts", [1, 32, 33, 1024, 1025, 33 * 32 + 1, 40_000])
def test_gcs_compose_plan_joins_any_number_of_parts_in_order(parts: int) -> None:
    """GCS composes at most 32 sources a call and no longer caps a composite's
    components (the old limit was 1,024), so an export of any part count, 8 GiB
    and more at the default part_size, is one tree of calls: each call takes 1-32
    sources that exist by then, every scratch object is made once under the
    scratch prefix, only the last call writes the target, and the leaves read in
    call order are exactly the parts in order."""
    from pgjobs.poller import gcs

    sources = [f"part/{n:06d}" for n in range(parts)]
    steps = gcs.compose_plan(sources, "target", "scratch/")
    made = [name for name, _ in steps]
    assert made[-1] == "target" and "target" not in made[:-1]
    assert len(set(made)) == len(made)
    assert all(name.startswith("scratch/") for name in made[:-1])
    existing = set(sources)
    for name, group in steps:
        assert 1 <= len(group) <= gcs.COMPOSE_MAX
        assert set(group) <= existing, f"{name} composes an object not made yet"
        existing.add(name)
    recipe = dict(steps)

    def leaves(name: str) -> list[str]:
        return [leaf for part in recipe[name]
                for leaf in (leaves(part) if part in recipe else [part])]

    assert leaves("target") == sources


# --- neither: the clients stay unloaded ---------------------------------------


def test_cloud_clients_are_imported_only_for_their_storage() -> None:
    """Google's and Azure's clients are heavy: `pgjobs --help` and file:// work
    never load them (nor google.auth)."""
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\n"
            "from pgjobs.cli.main import main\n"
            "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
            "from pgjobs.poller import export, storage, worker\n"
            "storage.warm_up('file:///tmp/x')\n"
            "storage.store_for(storage.parse('gs://b/x'))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('google', 'azure')))[:1])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
