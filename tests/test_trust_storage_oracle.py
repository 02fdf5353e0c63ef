"""No key-existence oracle across tenants.

A client confined to tenant 1 (pgjobs_client, pgjobs.allowed_scopes, a
per-tenant allow-list prefix) must not learn whether a key exists outside its
folder (another tenant's export, any other object of the bucket) from the
way an import or export naming it fails: the answer (SQLSTATE, message,
hint, the job's error) is the same, word for word once the URI is set
aside, for a key that holds an object, a missing key, a folder and a
missing folder. It is: every check that refuses such a URI is made on the
text of the URI (pgjobs._storage_allowed_for at submit; the worker's
allow-list check before it opens anything), never by asking the storage.
Inside its own folder the client may read every object anyway (an import
of it), so what an answer says there tells it nothing new
(docs/operations.md, *Storage allow-list*)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import (
    drop_client,
    job,
    people_client,
    run_export,
    run_import,
    submit_export,
    submit_import,
)
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]
# Where, outside tenant 1's folder, the client points: each asked once with
# something there and once with nothing (the same URI).
PLACES = {
    "object": "2/export.csv",
    "folder": "2/folder",
    "outside_object": "../secret.csv",
}


@pytest.fixture
def tenants(conn: Conn, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "tenants"
    conn.execute("SELECT pgjobs.allow_storage(%s)", (f"file://{root}/{{scope}}",))
    role = people_client(conn, "storage_oracle")
    (root / "1").mkdir(parents=True)
    (root / "2").mkdir()
    (root / "1" / "in.jsonl").write_text(json.dumps({"name": "one"}) + "\n")
    yield root, role
    drop_client(conn, role)


def _path(root: Path, place: str) -> Path:
    return root.parent / place[3:] if place.startswith("..") else root / place


def _place(root: Path, place: str, there: bool) -> str:
    """The URI of ``place``, with an object (or folder) there or nothing."""
    path = _path(root, place)
    if there:
        if place.endswith(".csv"):
            path.write_text("name\nsecret\n")
        else:
            path.mkdir()
    elif path.is_dir():
        path.rmdir()
    else:
        path.unlink(missing_ok=True)
    return f"file://{path}"


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("verb", ["import", "export"])
def test_a_submit_answers_alike_whether_something_is_there_or_not(
        conn: Conn, tenants: tuple[Path, str], verb: str, place: str) -> None:
    root, role = tenants
    answers = []
    for there in (True, False):
        uri = _place(root, PLACES[place], there)
        with acting_as(conn, role, scopes="1"), pytest.raises(psycopg.Error) as refused:
            if verb == "import":
                submit_import(conn, uri, "1")
            else:
                submit_export(conn, "1", {}, {"destination": uri}, target="people")
        diag = refused.value.diag
        answers.append((refused.value.sqlstate, diag.message_primary, diag.message_detail,
                        diag.message_hint))
    assert answers[0][0] == "42501", answers
    assert answers[0] == answers[1]


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("verb", ["import", "export"])
def test_the_worker_answers_alike_whether_something_is_there_or_not(
        conn: Conn, dsn: str, tenants: tuple[Path, str], tmp_path: Path, verb: str,
        place: str) -> None:
    """A job row edited after the submit (its source or destination now
    outside the tenant's folder): the worker refuses it before it looks, so
    the job's error is the same whether something is there or not, and
    nothing there is read or written."""
    root, role = tenants
    errors = []
    for there in (True, False):
        uri = _place(root, PLACES[place], there)
        with acting_as(conn, role, scopes="1"):
            if verb == "import":
                job_id = submit_import(conn, f"file://{root}/1/in.jsonl", "1")
            else:
                job_id = submit_export(conn, "1", {}, {"destination": f"file://{root}/1"},
                                       target="people")
        key = "source" if verb == "import" else "destination"
        conn.execute("UPDATE pgjobs.jobs SET payload = jsonb_set(payload, %s, %s) "
                     "WHERE id = %s", (f"{{{key}}}", json.dumps(uri), job_id))
        run = run_import if verb == "import" else run_export
        outcome = run(dsn, job_id, f"file://{tmp_path}/own")
        row = job(conn, job_id)
        assert outcome.status == row["status"] == "failed", outcome
        errors.append((row["error"] or "").replace(f"/{job_id}.", "/<id>."))
        if there:
            path = _path(root, PLACES[place])
            assert not path.is_file() or path.read_text() == "name\nsecret\n"
            assert not path.is_dir() or list(path.iterdir()) == []
    assert "allow-list" in errors[0]
    assert errors[0] == errors[1]
