"""Per-tenant storage prefixes: `{scope}` as one whole path segment of an
allow-list prefix allows a job of scope S only that prefix with S's canonical
text in its place. A client confined by pgjobs.allowed_scopes to tenant 1 may
export to and import from tenant 1's folder, never tenant 2's: refused at
submit (42501) and, for a job row edited after the submit, by the worker at
run time. A scope whose text is not a safe path segment is allowed nothing; a
literal `{scope}` in a client's URI is no wildcard; allow_storage refuses the
placeholder inside a segment or twice; a prefix without it is unchanged
(shared by every tenant)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import (
    build_target,
    drop_client,
    job,
    people_client,
    run_export,
    run_import,
    scalar,
    submit_export,
    submit_import,
)
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]


@pytest.fixture
def tenants(conn: Conn, tmp_path: Path) -> Path:
    """The per-tenant prefix file://tmp_path/tenants/{scope}, allowed."""
    root = tmp_path / "tenants"
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{root}/{{scope}}",))
    return root


@pytest.fixture
def client(conn: Conn, tenants: Path) -> Iterator[str]:
    """A pgjobs_client role on `people` (integer scope `tenant`), one row of
    tenant 1 and one of tenant 2, and a source file in each tenant's folder."""
    role = people_client(conn, "storage_scope")
    conn.execute("INSERT INTO people (tenant, name) VALUES (1, 'one'), (2, 'two')")
    for tenant in ("1", "2"):
        (tenants / tenant).mkdir(parents=True)
        (tenants / tenant / "in.jsonl").write_text(
            json.dumps({"name": f"from-folder-{tenant}"}) + "\n")
    yield role
    drop_client(conn, role)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("spelling", ["1", "01", " 1"])
def test_a_confined_client_exports_to_and_imports_from_its_own_folder(
        conn: Conn, dsn: str, client: str, tenants: Path, tmp_path: Path,
        spelling: str) -> None:
    """The folder is named by the scope's canonical text, however it was spelled."""
    with acting_as(conn, client, scopes="1"):
        export_id = submit_export(conn, spelling, {}, {"destination": f"file://{tenants}/1/out"},
                                  target="people")
        import_id = submit_import(conn, f"file://{tenants}/1/in.jsonl", spelling)
    exported = run_export(dsn, export_id, f"file://{tmp_path}/own")
    assert exported.status == "succeeded", exported
    assert exported.result is not None
    assert exported.result["uri"].startswith(f"file://{tenants}/1/out/")
    imported = run_import(dsn, import_id, f"file://{tmp_path}/own")
    assert imported.status == "succeeded", imported
    assert scalar(conn, "SELECT array_agg(name ORDER BY id) FROM people WHERE tenant = 1") == [
        "one", "from-folder-1"]
    assert not (tenants / "01").exists()


@pytest.mark.parametrize("uri", [
    "file://{t}/2/in.jsonl",
    "file://{t}/2",
    "file://{t}/2/",
    "file://{t}/01/in.jsonl",  # not the canonical text: another folder, not tenant 1's
    "file://{t}/{{scope}}/in.jsonl",  # the placeholder is the stored prefix's alone
    "file://{t}/{{scope}}",
    "file://{t}",
    "file://{t}/1x",
    "file://{t}/1/../2/in.jsonl",
    "file://{t}/1%2f..%2f2/in.jsonl",
])
def test_another_tenants_folder_is_refused_at_submit(
        conn: Conn, client: str, tenants: Path, uri: str) -> None:
    uri = uri.format(t=tenants)
    with acting_as(conn, client, scopes="1"):
        with pytest.raises(errors.InsufficientPrivilege) as exported:
            submit_export(conn, "1", {}, {"destination": uri}, target="people")
        with pytest.raises(errors.InsufficientPrivilege) as imported:
            submit_import(conn, uri, "1")
        for exc in (exported, imported):
            assert exc.value.diag.message_hint, uri
            if "not under an allowed" in str(exc.value):
                assert "its own folder, named '1'" in exc.value.diag.message_hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_a_literal_placeholder_in_a_clients_uri_is_no_wildcard(
        conn: Conn, tenants: Path) -> None:
    for scope in ("1", "2", "{scope}", None):
        for uri in (f"file://{tenants}/{{scope}}", f"file://{tenants}/{{scope}}/x.csv"):
            assert scalar(conn, "SELECT pgjobs._storage_allowed_for(%s, %s)",
                          (uri, scope)) is False, (uri, scope)
    # Under a prefix every tenant shares, a folder named "{scope}" is just a folder.
    conn.execute("SELECT pgjobs.allow_storage('s3://shared/x')")
    assert scalar(conn, "SELECT pgjobs._storage_allowed_for('s3://shared/x/{scope}/a', '1')")


@pytest.mark.parametrize("change", ["destination", "checkpoint", "parallel"])
def test_the_worker_refuses_an_export_edited_to_another_tenant(
        conn: Conn, dsn: str, client: str, tenants: Path, tmp_path: Path,
        change: str) -> None:
    with acting_as(conn, client, scopes="1"):
        options: dict[str, Any] = {"destination": f"file://{tenants}/1"}
        if change == "parallel":
            options["parallel"] = 2
        job_id = submit_export(conn, "1", {}, options, target="people")
    other = f"file://{tenants}/2"
    if change == "checkpoint":
        conn.execute("""UPDATE pgjobs.jobs SET checkpoint = jsonb_build_object(
                            'v', 1, 'prefix', %s::text, 'uri', %s::text) WHERE id = %s""",
                     (other, f"{other}/x.csv", job_id))
    else:
        conn.execute("UPDATE pgjobs.jobs SET payload = jsonb_set(payload, '{destination}', %s) "
                     "WHERE id = %s", (json.dumps(other), job_id))
    before = _files(tenants)
    outcome = run_export(dsn, job_id, f"file://{tmp_path}/own")
    assert outcome.status == "failed", outcome
    assert "allow-list" in (outcome.error or "")
    assert _files(tenants) == before
    assert not (tmp_path / "own").exists()


def test_the_worker_refuses_an_import_edited_to_another_tenant(
        conn: Conn, dsn: str, client: str, tenants: Path, tmp_path: Path) -> None:
    with acting_as(conn, client, scopes="1"):
        job_id = submit_import(conn, f"file://{tenants}/1/in.jsonl", "1")
    conn.execute("UPDATE pgjobs.jobs SET payload = jsonb_set(payload, '{source}', %s) "
                 "WHERE id = %s", (json.dumps(f"file://{tenants}/2/in.jsonl"), job_id))
    outcome = run_import(dsn, job_id, f"file://{tmp_path}/own")
    assert outcome.status == "failed", outcome
    assert "allow-list" in (outcome.error or "")
    assert job(conn, job_id)["status"] == "failed"
    assert scalar(conn, "SELECT count(*) FROM people") == 2


@pytest.fixture
def notes(conn: Conn) -> Iterator[str]:
    """A target `notes` with a text scope, and a client role that may read it."""
    build_target(conn, "notes", "id bigint PRIMARY KEY, scope text NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now()")
    role = f"storage_scope_notes_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT SELECT ON notes TO {role}")
    yield role
    drop_client(conn, role)


UNSAFE = ["a/b", "..", ".", ".hidden", "a b", "", "a\\b", "a%2fb", "{scope}", "a?b", "a#b",
          "é", "a\nb", "x" * 256]


@pytest.mark.parametrize("scope", UNSAFE)
def test_a_scope_that_is_not_a_safe_segment_is_allowed_nothing(
        conn: Conn, notes: str, scope: str) -> None:
    conn.execute("SELECT pgjobs.allow_storage('memory:///t/{scope}')")
    conn.execute("SELECT pgjobs.allow_storage('s3://b/t/{scope}/in')")
    naive = [f"memory:///t/{scope}", f"memory:///t/{scope}/x", f"s3://b/t/{scope}/in",
             f"s3://b/t/{scope}/in/x", "memory:///t", "memory:///t/x", "s3://b/t", "s3://b/t/in"]
    for uri in naive:
        assert scalar(conn, "SELECT pgjobs._storage_allowed_for(%s, %s)",
                      (uri, scope)) is False, uri
    conn.execute(f"SET ROLE {notes}")
    for uri in naive[:2]:
        with pytest.raises(errors.InsufficientPrivilege) as exc:
            submit_export(conn, scope, {}, {"destination": uri}, target="notes")
        if "not under an allowed" in str(exc.value):
            assert "not a safe path segment" in (exc.value.diag.message_hint or ""), uri
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize("scope", ["acme", "Acme-2", "a.b", "_x", "-", "9" * 255])
def test_a_safe_text_scope_gets_its_own_folder(conn: Conn, notes: str, scope: str) -> None:
    conn.execute("SELECT pgjobs.allow_storage('memory:///t/{scope}')")
    conn.execute(f"SET ROLE {notes}")
    job_id = submit_export(conn, scope, {}, {"destination": f"memory:///t/{scope}/x"},
                           target="notes")
    with pytest.raises(errors.InsufficientPrivilege):
        submit_export(conn, scope, {}, {"destination": f"memory:///t/{scope}x"}, target="notes")
    conn.execute("RESET ROLE")
    assert job(conn, job_id)["payload"]["destination"] == f"memory:///t/{scope}/x"


@pytest.mark.parametrize("prefix", [
    "s3://b/x{scope}",
    "s3://b/{scope}x",
    "s3://b/a{scope}b/c",
    "s3://b/{scope}/{scope}",
    "s3://b/{scope}/x/{scope}",
    "file:///srv/{scope}{scope}",
    "file:///srv/{scope}.d",
    "memory:///{scope}-x",
    "https://host/t/{scope}{scope}/",
    "s3://{scope}/x",
])
def test_allow_storage_refuses_a_misplaced_or_repeated_placeholder(
        conn: Conn, prefix: str) -> None:
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("SELECT pgjobs.allow_storage(%s)", (prefix,))
    assert exc.value.diag.message_hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.storage_allow") == 0


@pytest.mark.parametrize("prefix", [
    "s3://b/{scope}", "s3://b/{scope}/", "file:///srv/x/{scope}/in", "memory:///{scope}",
    "https://host/t/{scope}",
])
def test_allow_storage_keeps_a_whole_segment_placeholder_in_normal_form(
        conn: Conn, prefix: str) -> None:
    conn.execute("SELECT pgjobs.allow_storage(%s)", (prefix,))
    stored = scalar(conn, "SELECT prefix FROM pgjobs.storage_allow")
    assert stored == prefix.rstrip("/")
    expanded = stored.replace("{scope}", "7")
    assert scalar(conn, "SELECT pgjobs._storage_allowed_for(%s, '7')", (expanded + "/a",))
    assert not scalar(conn, "SELECT pgjobs._storage_allowed_for(%s, '8')", (expanded + "/a",))
    assert not scalar(conn, "SELECT pgjobs._storage_allowed(%s)", (expanded + "/a",))
    conn.execute("SELECT pgjobs.disallow_storage(%s)", (prefix,))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.storage_allow") == 0


@pytest.mark.parametrize("scope", ["1", "2", "a/b", "", None])
def test_a_prefix_without_the_placeholder_is_unchanged_and_shared(
        conn: Conn, scope: str | None) -> None:
    conn.execute("SELECT pgjobs.allow_storage('s3://b/shared')")
    conn.execute("SELECT pgjobs.allow_storage('s3://b/{tenant}')")  # other braces: literal
    cases = {"s3://b/shared": True, "s3://b/shared/1/x": True, "s3://b/shared/2/x": True,
             "s3://b/sharedx": False, "s3://b/{tenant}/x": True, "s3://b/1/x": False,
             "s3://b/shared/../x": False}
    for uri, expected in cases.items():
        assert scalar(conn, "SELECT pgjobs._storage_allowed_for(%s, %s)",
                      (uri, scope)) is expected, uri
        assert scalar(conn, "SELECT pgjobs._storage_allowed(%s)", (uri,)) is expected, uri


def test_clients_cannot_call_the_per_tenant_checks(conn: Conn, client: str) -> None:
    """They would tell a client which prefixes the allow-list holds."""
    granted = scalar(conn, """
        SELECT coalesce(array_agg(p.proname::text ORDER BY p.proname), '{}')
          FROM pg_proc p
         WHERE p.pronamespace = 'pgjobs'::regnamespace
           AND p.proname IN ('_storage_allowed_for', '_storage_prefix_for',
                             '_storage_scope_segment', '_storage_scope_hint')
           AND has_function_privilege('pgjobs_client', p.oid, 'EXECUTE')""")
    assert granted == []
    conn.execute(f"SET ROLE {client}")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs._storage_allowed_for('s3://b/x', '1')")
    conn.execute("RESET ROLE")
