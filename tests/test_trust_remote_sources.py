"""Remote import sources attacked as a class (h188): an s3:// (moto), az://
(Azurite), gs:// (gcp-storage-emulator) or memory:// source replaced by
another of the same size mid-read or between two attempts, deleted mid-read,
or answered by a store that ignores the byte range asked for or cuts a body
short, never ends in a job that succeeded with rows of two versions, rows
twice or rows missing: it fails (its committed batches' rows of the one
version it began with, as documented), or it retries and then ends exact.

tests/test_trust_import_variants.py holds the same attacks on file://
sources; tests/test_import_https.py those on https:// sources."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import obstore
import psycopg
import pytest

from pgjobs.poller import s3client, storage
from pgjobs.poller.importer import Importer
from tests.support import allow, claim_import, job, make_people, submit_import
from tests.support.s3_faults import FaultProxy

Conn = psycopg.Connection[Any]
ROWS = 400
BLOCK = 1024  # many ranged GETs per source


def source(version: str) -> bytes:
    """A CSV of ROWS records whose names say their version ("a" or "b"): the
    two versions have the same size and header. Every line is 16 bytes, so a
    block of BLOCK bytes ends at a line's end: a wrong block then reads as
    whole records, not as one a parse error happens to refuse."""
    return b"name,age,active\n" + b"".join(b"%s%06d,%02d,true\n" % (version.encode(), i, i % 50)
                                           for i in range(ROWS))


def _put(uri: str, data: bytes) -> None:
    loc = storage.parse(uri)
    if loc.scheme in ("az", "memory"):
        obstore.put(storage.store_for(loc), loc.path, data)
    else:
        storage.write(uri, data)


def _delete(uri: str) -> None:
    assert storage.delete(uri)


STORES = {"s3": "bucket", "s3 versioned": "bucket", "az": "az_container",
          "gs": "gcs_bucket", "memory": None}


@pytest.fixture(params=sorted(STORES))
def where(request: pytest.FixtureRequest) -> str:
    """A fresh prefix on each remote store (skipped where its emulator is not
    installed), with no trailing slash; "s3 versioned": a bucket that keeps
    every version of an object (a replaced source's old bytes stay readable
    by version id)."""
    fixture = STORES[request.param]
    if fixture is None:
        return f"memory:///{request.node.name[-40:].replace('[', '-').strip(']')}-src"
    prefix = str(request.getfixturevalue(fixture)).rstrip("/")
    if request.param == "s3 versioned":
        import boto3

        boto3.session.Session().client(
            "s3", endpoint_url=request.getfixturevalue("s3_env"),
            region_name="us-east-1").put_bucket_versioning(
            Bucket=storage.parse(prefix).base.split("://")[1],
            VersioningConfiguration={"Status": "Enabled"})
    return prefix


def _names(conn: Conn) -> list[str]:
    return [n for (n,) in conn.execute("SELECT name FROM people ORDER BY id")]


def _one_version_once(conn: Conn, committed: int | None = None) -> list[str]:
    """The rows are of version "a" only, each record at most once, in order
    (a prefix of the source's records): what a failed import may leave."""
    names = _names(conn)
    assert names == [f"a{i:06d}" for i in range(len(names))], names[:5]
    if committed is not None:
        assert len(names) == committed
    return names


def _submit(conn: Conn, where: str, **options: Any) -> tuple[str, int]:
    make_people(conn)
    allow(conn, where)
    uri = f"{where}/in/rows.csv"
    _put(uri, source("a"))
    return uri, submit_import(conn, uri, "1", {"max_attempts": 5, **options})


def _run(dsn: str, job_id: int, where: str, **kw: Any) -> str:
    return Importer(dsn, job_id, claim_import(dsn, job_id), where, batch_bytes=2000,
                    **kw).run().status


MID_READ: dict[str, Callable[[str], None]] = {
    "replaced, same size": lambda uri: _put(uri, source("b")),
    "deleted": _delete,
}


@pytest.mark.parametrize("change", sorted(MID_READ))
def test_a_remote_source_changed_mid_read_never_succeeds_with_two_versions(
        conn: Conn, dsn: str, where: str, change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "READ_BLOCK", BLOCK)
    uri, job_id = _submit(conn, where)
    done = threading.Event()

    def progress(records: int, read: int, total: int | None) -> None:
        if not done.is_set():
            done.set()
            MID_READ[change](uri)

    _run(dsn, job_id, where, on_progress=progress)
    row = job(conn, job_id)
    assert row["status"] != "succeeded", _names(conn)[-3:]
    _one_version_once(conn)


@pytest.mark.parametrize("how", ["same size, other bytes", "deleted and put back"])
def test_a_remote_source_replaced_between_attempts_is_not_read_on(
        conn: Conn, dsn: str, where: str, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "READ_BLOCK", BLOCK)
    uri, job_id = _submit(conn, where)
    stop = threading.Event()
    assert _run(dsn, job_id, where, stop=stop,
                on_progress=lambda *_: stop.set()) == "released"
    committed = len(_one_version_once(conn))
    assert 0 < committed < ROWS
    if how == "deleted and put back":
        _delete(uri)
    _put(uri, source("b"))
    _run(dsn, job_id, where)
    row = job(conn, job_id)
    assert row["status"] == "failed", (row["status"], _names(conn)[-3:])
    assert "55000" in str(row["error"]) and "replaced" in str(row["error"]), row["error"]
    _one_version_once(conn, committed)


# --- an S3 store (or a proxy before it) that answers other bytes than asked -------


@pytest.fixture
def proxy(s3_fault_proxy: FaultProxy) -> FaultProxy:
    """The worker reaches moto through the fault proxy (tests/support/storage.py)."""
    return s3_fault_proxy


@pytest.fixture
def proxied_bucket(proxy: FaultProxy, s3_endpoint: str) -> str:
    from tests.support import new_bucket

    return new_bucket(s3_endpoint).rstrip("/")


@pytest.mark.parametrize("at", [1, 3], ids=["first block", "a later block"])
def test_an_s3_range_answered_with_the_whole_object_fails_for_good(
        conn: Conn, dsn: str, proxy: FaultProxy, proxied_bucket: str, at: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A 200 with the whole object, read as the block asked for, imported the
    object's start again as if it were that block (its header row one record
    rejected, which max_rejects let pass): every record before it twice. At
    the first block the whole object is the bytes asked for and more: refused
    alike, as an https:// server's 200 is (tests/test_import_https.py)."""
    monkeypatch.setattr(storage, "READ_BLOCK", BLOCK)
    uri, job_id = _submit(conn, proxied_bucket, max_rejects=10)
    gets = 0
    plain = proxy.handle

    def handle(req: Any) -> None:
        nonlocal gets
        if req.command == "GET" and "Range" in req.headers:
            gets += 1
            if gets == at:
                proxy.faults.ranges_ignored = 1
        plain(req)

    monkeypatch.setattr(proxy, "handle", handle)
    _run(dsn, job_id, proxied_bucket)
    row = job(conn, job_id)
    assert row["status"] == "failed", (row["status"], len(_names(conn)))
    assert "range" in str(row["error"]).lower(), row["error"]
    _one_version_once(conn)


def test_an_s3_body_cut_short_is_retried_and_ends_exact(
        conn: Conn, dsn: str, proxy: FaultProxy, proxied_bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "READ_BLOCK", BLOCK)
    uri, job_id = _submit(conn, proxied_bucket)
    proxy.faults.gets_cut = 1
    first = _run(dsn, job_id, proxied_bucket)
    assert first == "retrying", first
    _one_version_once(conn)
    conn.execute("UPDATE pgjobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    assert _run(dsn, job_id, proxied_bucket) == "succeeded"
    assert _one_version_once(conn) == [f"a{i:06d}" for i in range(ROWS)]


def _ranges_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store's ranged read answered with the whole object, as a store (or a
    proxy before it) that ignores Range answers: at the lowest call of each
    reader (botocore's GetObject, obstore's get, Google's client)."""
    import obstore as lib

    plain_call, plain_get = s3client.Client._call, lib.get

    def call(self: Any, operation: str, **kw: Any) -> Any:
        if operation == "get_object":
            kw.pop("Range", None)
        return plain_call(self, operation, **kw)

    def whole(store: Any, path: str) -> bytes:
        return bytes(storage.obstore.get(store, path).bytes())

    monkeypatch.setattr(s3client.Client, "_call", call)
    monkeypatch.setattr(lib, "get", lambda store, path, options=None: plain_get(store, path))
    monkeypatch.setattr(type(storage.obstore), "get_range",
                        lambda self, store, path, *, start, length: whole(store, path))


@pytest.mark.parametrize("offset", [0, 3 * BLOCK])
def test_every_remote_reader_refuses_a_block_other_than_the_range_asked_for(
        where: str, offset: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule behind the S3 case above, on each store's reader: a block is
    exactly the range asked for, or the read fails for good having yielded no
    byte of it (https:// has its own tests in tests/test_import_https.py)."""
    uri = f"{where}/in/rows.csv"
    data = source("a")
    _put(uri, data)
    _ranges_ignored(monkeypatch)
    read: list[bytes] = []
    with pytest.raises(storage.StorageError) as caught:
        read.extend(storage.open_range(uri, offset, BLOCK, len(data)))
    assert not caught.value.retryable, caught.value
    assert "range" in str(caught.value) and read == [], (str(caught.value), len(read))


# --- the allow-list's text and the place the worker reaches ------------------------

PREFIXES = ["s3://allowed-bucket/in", "gs://allowed-bucket/in", "az://allowed/in",
            "https://files.example.com/in"]


def _spellings(prefix: str) -> list[str]:
    """Ways to write a URI that a text comparison and the worker's client may
    read differently: scheme case, userinfo, ports, IDN and lookalike hosts,
    trailing dots, %-escapes, IPv6 literals, dot and empty segments,
    backslashes, fullwidth or other lookalike separators, whitespace."""
    scheme, rest = prefix.split("://")
    host, path = rest.split("/", 1)
    return [
        f"{scheme.upper()}://{host}/{path}/x.csv",
        f"{scheme.title()}://{host}/{path}/x.csv",
        f"{scheme}://{host.upper()}/{path}/x.csv",
        f"{scheme}://user@{host}/{path}/x.csv",
        f"{scheme}://{host}@evil.example/{path}/x.csv",
        f"{scheme}://{host}:pw@evil.example/{path}/x.csv",
        f"{scheme}://evil.example#@{host}/{path}/x.csv",
        f"{scheme}://{host}:443/{path}/x.csv",
        f"{scheme}://{host}:0443/{path}/x.csv",
        f"{scheme}://{host}./{path}/x.csv",
        f"{scheme}://{host}../{path}/x.csv",
        f"{scheme}://{host}.evil.example/{path}/x.csv",
        f"{scheme}://xn--{host}/{path}/x.csv",
        f"{scheme}://{host.replace('l', 'ⅼ', 1)}/{path}/x.csv",  # U+217C
        f"{scheme}://{host.replace('e', 'е', 1)}/{path}/x.csv",  # Cyrillic е
        f"{scheme}://[::1]/{path}/x.csv",
        f"{scheme}://[::ffff:127.0.0.1]:8443/{path}/x.csv",
        f"{scheme}://127.0.0.1/{path}/x.csv",
        f"{scheme}://{host}%2e/{path}/x.csv",
        f"{scheme}://{host}/{path}%2f..%2fsecret/x.csv",
        f"{scheme}://{host}/{path}/%2e%2e/secret/x.csv",
        f"{scheme}://{host}/{path}/../secret/x.csv",
        f"{scheme}://{host}/{path}/./x.csv",
        f"{scheme}://{host}/{path}//x.csv",
        f"{scheme}://{host}//{path}/x.csv",
        f"{scheme}://{host}/{path}\\..\\secret/x.csv",
        f"{scheme}://{host}/{path}x/x.csv",
        f"{scheme}://{host}/{path}/x.csv?/../../secret",
        f"{scheme}://{host}/{path}/x.csv#/../../secret",
        f"{scheme}://{host}/{path}/ｘ／..／..／secret.csv",  # fullwidth
        f"{scheme}://{host}/{path}/\u2024\u2024/secret.csv",  # one-dot leaders
        f"{scheme}://{host}/{path}/x.csv\t",
        f" {scheme}://{host}/{path}/x.csv",
        f"{scheme}://{host}\t/{path}/x.csv",
        f"{scheme}:/{host}/{path}/x.csv",
        f"{scheme}:///{host}/{path}/x.csv",
    ]


IMPORT_SOURCE = "SELECT pgjobs.submit_import('people'::regclass, '1', %s::text)"
EXPORT_DESTINATION = ("SELECT pgjobs.submit_export('people'::regclass, '1', '{}',"
                      " jsonb_build_object('destination', %s::text))")


def _place(uri: str) -> tuple[str, str, list[str]]:
    """Where the worker's clients go for ``uri``: scheme, bucket or host (as
    the client connects to it) and the path's segments."""
    loc = storage.parse(uri)
    if loc.scheme == "https":
        from urllib.parse import urlsplit

        parts = urlsplit(uri)
        return "https", f"{parts.hostname}:{parts.port or 443}", parts.path.split("/")[1:]
    return loc.scheme, loc.base.split("://", 1)[1], loc.path.split("/")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_uri_the_allow_list_admits_is_read_under_the_prefix_it_names(
        conn: Conn, prefix: str) -> None:
    """For every spelling: the allow-list refuses it, or the place the worker
    reaches for it (bucket or host and port, path segments) is under the
    allowed prefix's; and submit_import and submit_export (the two entry points
    that take a URI from a client) decide as the allow-list does."""
    make_people(conn)
    allow(conn, prefix)
    scheme, where, segments = _place(prefix)
    admitted = []
    for uri in _spellings(prefix):
        ok = conn.execute("SELECT pgjobs._storage_allowed_for(%s, NULL)", (uri,)).fetchone()
        if ok is not None and ok[0]:
            admitted.append(uri)
            place = _place(uri)
            assert place[:2] == (scheme, where) and place[2][:len(segments)] == segments, \
                (uri, place)
            continue
        for entry in (IMPORT_SOURCE, EXPORT_DESTINATION):
            with pytest.raises(psycopg.Error) as caught, conn.transaction():
                conn.execute(entry, (uri,))
            assert caught.value.sqlstate in ("42501", "22023"), (uri, caught.value)
    # The spellings that only change case are the prefix's own place.
    assert all(u.lower().startswith(prefix.split("://")[0]) for u in admitted), admitted


# --- exports: every byte, at the key named, on every store ------------------------

KEYS = {"unicode, space": "ünï-cödé/日本 two words",
        "reserved, dots": "a+b=c@d:e~f*g'h,i;j$k&l/...x/.y./z.."}


@pytest.mark.parametrize(("key", "options"), [
    ("unicode, space", {}), ("reserved, dots", {}),
    ("reserved, dots", {"format": "jsonl", "gzip": True})],
    ids=["unicode-csv", "reserved-csv", "reserved-jsonl-gzip"])
def test_an_export_to_any_key_succeeds_only_with_every_byte_there(
        conn: Conn, dsn: str, where: str, key: str, options: dict[str, Any]) -> None:
    """Whatever a destination's key holds that a store may encode (non-ASCII,
    reserved characters, spaces, dots that are no dot segment), a succeeded
    export's object is found at the URI its result names, under the
    destination, listed there, and is the result's bytes and SHA-256: a plain
    COPY's rows."""
    from tests.support import content, make_items, plain_copy, run_export, submit_export

    make_items(conn, rows=60)
    allow(conn, where)
    destination = f"{where}/{KEYS[key]}"
    job_id = submit_export(conn, "1", {}, {"destination": destination, **options})
    outcome = run_export(dsn, job_id, where)
    assert outcome.status == "succeeded", outcome.error
    result = job(conn, job_id)["result"]
    assert storage.within(result["uri"], destination), (result["uri"], destination)
    listed = storage.list_paths(destination + "/")
    assert storage.parse(result["uri"]).path in listed, (result["uri"], listed)
    data = content(result)  # its bytes and SHA-256 as the result states them
    if not options:
        assert data == plain_copy(conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")
