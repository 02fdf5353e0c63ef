"""Issue 9, item 11: clients choose where the worker writes only within the storage
allow-list. A client naming any other destination (other directories, dot
segments, %-escapes, other buckets, bucket names that merely share a prefix,
relative file paths) is refused at submit with 42501 and nothing is written;
the worker refuses at run time too (a destination changed in the jobs table,
a prefix disallowed since); administrators manage the list, clients cannot."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgjobs.poller import storage
from tests.support import job, make_items, run_export, submit_export

Conn = psycopg.Connection[Any]


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    """A pgjobs_client role with SELECT only on `items`."""
    make_items(conn, rows=30)
    role = f"pgjobs_trust_storage_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT SELECT ON items TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def _escape_attempts(allowed: Path) -> list[str]:
    base = f"file://{allowed}"
    return [
        f"file://{allowed.parent}/elsewhere/",
        "file:///tmp/elsewhere/",
        "file://./../../..",
        "file://./pgjobs-exports",  # relative: resolved against the worker's directory
        "file://../x",
        "file://otherhost/srv/x",
        f"{base}/../etc",
        f"{base}/x/../../etc",
        f"{base}/./x",
        f"{base}/.",
        f"{base}/..",
        f"{base}/%2e%2e/x",
        f"{base}/%2E%2E/x",
        f"{base}%2f..%2fx",
        f"{base}/x%00",
        f"{base}/x\\..\\..\\etc",
        f"{base}/x\n/y",
        f"{base}//x",
        f"{base}x",  # a sibling sharing the prefix's spelling
        f"{base}./x",  # trailing-dot trick
        f"{base}/x?/../../etc",
        f"{base}/x#/../../etc",
        f"FILE://{allowed.parent}/elsewhere",
        f"File://{allowed}/../etc",
        "s3://other-bucket/",
        "s3://other-bucket/exports",
        "s3://allowed-bucket-suffix/exports",
        "s3://allowed-bucket./exports",
        "s3://allowed-bucket/exports-other",
        "s3://allowed-bucket/exportsx/y",
        "s3://allowed-bucket/",
        "s3://allowed-bucket",
        "s3://allowed-bucket/exports/../secrets",
        "s3://allowed-bucket/exports/%2e%2e/secrets",
        "s3://x@allowed-bucket/exports",
        "s3://allowed-bucket:443/exports",
        "S3://other-bucket/x",
        "gs://allowed-bucket/exports",
        "az://allowed-bucket/exports",
        "memory:///other",
    ]


def _allow(conn: Conn, tmp_path: Path) -> Path:
    allowed = tmp_path / "allowed"
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{allowed}/",))
    conn.execute("SELECT pgjobs.allow_storage('s3://allowed-bucket/exports')")
    conn.execute("SELECT pgjobs.allow_storage('memory:///allowed')")
    return allowed


def test_destinations_outside_the_allow_list_are_refused_42501(
        conn: Conn, client: str, tmp_path: Path) -> None:
    allowed = _allow(conn, tmp_path)
    conn.execute(f"SET ROLE {client}")
    for destination in _escape_attempts(allowed):
        with pytest.raises(errors.InsufficientPrivilege) as exc:
            submit_export(conn, "1", {}, {"destination": destination})
        assert exc.value.diag.message_hint, destination
        if "not under an allowed" in str(exc.value):
            assert "pgjobs.allow_storage" in exc.value.diag.message_hint, destination
    conn.execute("RESET ROLE")
    assert conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)
    assert not (tmp_path / "elsewhere").exists()
    assert not allowed.exists()


def test_nothing_is_allowed_by_default(conn: Conn, client: str, tmp_path: Path) -> None:
    conn.execute(f"SET ROLE {client}")
    for destination in (f"file://{tmp_path}/x", "s3://bucket/x", "memory:///x"):
        with pytest.raises(errors.InsufficientPrivilege, match="not under an allowed"):
            submit_export(conn, "1", {}, {"destination": destination})
    # Without a destination the export goes to the worker's own storage.
    assert submit_export(conn, "1", {}, {}) > 0


@pytest.mark.parametrize("destination", [
    "s3://allowed-bucket/exports",
    "s3://allowed-bucket/exports/",
    "s3://allowed-bucket/exports/team-a/2026",
    "S3://allowed-bucket/exports/x",
    "memory:///allowed/sub",
    "memory://allowed/sub/",
])
def test_allowed_prefixes_and_below_are_accepted_in_normal_form(
        conn: Conn, client: str, tmp_path: Path, destination: str) -> None:
    _allow(conn, tmp_path)
    conn.execute(f"SET ROLE {client}")
    job_id = submit_export(conn, "1", {}, {"destination": destination})
    conn.execute("RESET ROLE")
    stored = job(conn, job_id)["payload"]["destination"]
    assert stored == stored.rstrip("/") and stored.startswith(("s3://", "memory:///"))


def test_an_allowed_file_destination_is_written_there(
        conn: Conn, dsn: str, client: str, tmp_path: Path) -> None:
    allowed = _allow(conn, tmp_path)
    conn.execute(f"SET ROLE {client}")
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{allowed}/team"})
    conn.execute("RESET ROLE")
    outcome = run_export(dsn, job_id, f"file://{tmp_path}/worker-own")
    assert outcome.status == "succeeded", outcome
    assert outcome.result is not None
    assert outcome.result["uri"].startswith(f"file://{allowed}/team/")
    assert not (tmp_path / "worker-own").exists()


def test_clients_cannot_change_the_allow_list(conn: Conn, client: str) -> None:
    conn.execute(f"SET ROLE {client}")
    for call in ("SELECT pgjobs.allow_storage('s3://mine')",
                 "SELECT pgjobs.disallow_storage('s3://mine')",
                 "SELECT pgjobs._storage_allowed('s3://mine')",
                 "SELECT * FROM pgjobs.storage_allow",
                 "INSERT INTO pgjobs.storage_allow (prefix) VALUES ('s3://mine')"):
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(call)
    conn.execute("RESET ROLE")
    granted = conn.execute("""
        SELECT p.proname FROM pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace
           AND p.proname IN ('allow_storage', 'disallow_storage', '_storage_allowed',
                             '_normalize_uri')
           AND has_function_privilege('pgjobs_client', p.oid, 'EXECUTE')""").fetchall()
    assert granted == []


@pytest.mark.parametrize("prefix", [
    "file://./relative", "file:///a/../b", "file:///a/%2e%2e", "s3://", "s3://b/../x",
    "ftp://host/x", "nothing", "s3://b/x//y", "s3://B./x",
])
def test_administrators_cannot_allow_ambiguous_prefixes(conn: Conn, prefix: str) -> None:
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.allow_storage(%s)", (prefix,))
    assert conn.execute("SELECT count(*) FROM pgjobs.storage_allow").fetchone() == (0,)


def test_matching_is_on_path_segment_boundaries(conn: Conn) -> None:
    conn.execute("SELECT pgjobs.allow_storage('s3://b/exp/')")
    conn.execute("SELECT pgjobs.allow_storage('s3://b/exp')")  # idempotent, same normal form
    assert conn.execute("SELECT prefix FROM pgjobs.storage_allow").fetchall() == [("s3://b/exp",)]
    cases = {"s3://b/exp": True, "s3://b/exp/": True, "s3://b/exp/x": True,
             "s3://b/exports": False, "s3://b/exp-other/x": False, "s3://b2/exp": False,
             "s3://b": False, "s3://b/": False, "s3://b/exp/../x": False}
    for uri, expected in cases.items():
        assert conn.execute("SELECT pgjobs._storage_allowed(%s)", (uri,)).fetchone() == (
            expected,), uri
        assert storage.within(uri, "s3://b/exp") is expected, uri


def test_disallow_removes_and_the_worker_then_refuses_queued_jobs(
        conn: Conn, dsn: str, client: str, tmp_path: Path) -> None:
    allowed = _allow(conn, tmp_path)
    conn.execute(f"SET ROLE {client}")
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{allowed}"})
    conn.execute("RESET ROLE")
    conn.execute("SELECT pgjobs.disallow_storage(%s)", (f"file://{allowed}/",))
    outcome = run_export(dsn, job_id, f"file://{tmp_path}/own")
    assert outcome.status == "failed" and "allow-list" in (outcome.error or "")
    assert job(conn, job_id)["status"] == "failed"
    assert not allowed.exists() and not (tmp_path / "own").exists()
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege):
        submit_export(conn, "1", {}, {"destination": f"file://{allowed}"})


@pytest.mark.parametrize("tampered", [
    "file://{tmp}/elsewhere",
    "file://./../../..",
    "file://{tmp}/allowed/../elsewhere",
    "file://{tmp}/allowed/%2e%2e/elsewhere",
    "file://{tmp}/allowedx",
])
def test_the_worker_refuses_a_destination_changed_after_submit(
        conn: Conn, dsn: str, client: str, tmp_path: Path, tampered: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = _allow(conn, tmp_path)
    conn.execute(f"SET ROLE {client}")
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{allowed}"})
    conn.execute("RESET ROLE")
    conn.execute("UPDATE pgjobs.jobs SET payload = jsonb_set(payload, '{destination}', %s) "
                 "WHERE id = %s", (json.dumps(tampered.format(tmp=tmp_path)), job_id))
    work = tmp_path / "cwd" / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = sorted(p.name for p in tmp_path.iterdir())
    outcome = run_export(dsn, job_id, f"file://{tmp_path}/own")
    assert outcome.status == "failed", outcome
    assert "allow-list" in (outcome.error or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list(work.iterdir()) == []


def test_the_worker_refuses_a_checkpoint_pointing_elsewhere(
        conn: Conn, dsn: str, client: str, tmp_path: Path) -> None:
    allowed = _allow(conn, tmp_path)
    conn.execute(f"SET ROLE {client}")
    job_id = submit_export(conn, "1", {}, {"destination": f"file://{allowed}"})
    conn.execute("RESET ROLE")
    conn.execute("""UPDATE pgjobs.jobs SET checkpoint = jsonb_build_object(
                        'v', 1, 'prefix', %s::text, 'uri', %s::text) WHERE id = %s""",
                 (f"file://{allowed}", f"file://{tmp_path}/elsewhere/x.csv", job_id))
    outcome = run_export(dsn, job_id, f"file://{tmp_path}/own")
    assert outcome.status == "failed", outcome
    assert not (tmp_path / "elsewhere").exists()


def test_the_worker_own_storage_needs_no_entry(conn: Conn, dsn: str, client: str,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    conn.execute(f"SET ROLE {client}")
    job_id = submit_export(conn, "1", {}, {})
    conn.execute("RESET ROLE")
    monkeypatch.chdir(tmp_path)
    outcome = run_export(dsn, job_id, "file://./pgjobs-exports")  # the default, relative
    assert outcome.status == "succeeded", outcome
    assert (tmp_path / "pgjobs-exports").is_dir()


@pytest.mark.parametrize(("uri", "prefix", "expected"), [
    ("file:///srv/exp/a.csv", "file:///srv/exp", True),
    ("file:///srv/exp/a.csv", "file:///srv/exp/", True),
    ("file:///srv/exports/a.csv", "file:///srv/exp", False),
    ("file:///srv/exp/../etc/a", "file:///srv/exp", False),
    ("file:///srv/exp/./a", "file:///srv/exp", False),
    ("file:///srv/exp/%2e%2e/a", "file:///srv/exp", False),
    ("file://./exp/a", "file:///srv/exp", False),
    ("file:///srv/exp\\..\\a", "file:///srv/exp", False),
    ("s3://b/exp/a", "s3://b/exp", True),
    ("s3://b2/exp/a", "s3://b/exp", False),
    ("s3://b/exp/a", "gs://b/exp", False),
    ("memory:///exp/a", "memory://exp", True),
])
def test_within_is_segment_wise_and_refuses_dot_segments(uri: str, prefix: str,
                                                          expected: bool) -> None:
    assert storage.within(uri, prefix) is expected
