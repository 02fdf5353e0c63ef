"""The kinds pgjobs runs itself are submitted only through their own functions
(adversarial pass h1, confined client).

pgjobs.submit refused delete, backfill and export, but not import (added
later): a client with INSERT made an import job whose payload it wrote itself,
so nothing checked its source against the storage allow-list (nor its
options). The worker read any source under its own `--storage`, which holds
every tenant's exports and rejects: a session confined to tenant 1 imported
tenant 2's export `{storage}/people/2/7.csv` into its own scope and read it.
One rule now (pgjobs._builtin_kind) for pgjobs.submit and
pgjobs.submit_items, and the worker reads only what the allow-list allows.
"""

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

from tests.support import allow, job, make_people, run_import, scalar

Conn = psycopg.Connection[Any]
KINDS = ["delete", "backfill", "export", "import"]


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    """A pgjobs client with every right on `people`, confined to tenant 1."""
    make_people(conn)
    role = f"builtin_client_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON people TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute("RESET pgjobs.allowed_scopes")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("kind", KINDS)
def test_submit_and_submit_items_refuse_the_kinds_pgjobs_runs(conn: Conn, client: str,
                                                              kind: str) -> None:
    conn.execute(f"SET ROLE {client}")
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    payload = json.dumps({"source": "file:///etc/passwd", "format": "csv"})
    with pytest.raises(errors.InvalidParameterValue, match=f"pgjobs.submit_{kind}"):
        conn.execute("SELECT pgjobs.submit(%s, 'people', '1', %s)", (kind, payload))
    with pytest.raises(errors.InvalidParameterValue, match="cannot be a fan-out job"):
        conn.execute("SELECT pgjobs.submit_items(%s, 'people', '1', '[1]')", (kind,))
    conn.execute("RESET ROLE")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_a_worker_reads_no_source_the_allow_list_does_not_allow(
        conn: Conn, dsn: str, tmp_path: Path, client: str) -> None:
    """Another tenant's export in the worker's own storage: an import job that
    names it (an edited row; before, pgjobs.submit('import')) fails for good and
    imports nothing."""
    store = tmp_path / "store"
    (store / "people" / "2").mkdir(parents=True)
    theirs = store / "people" / "2" / "7.csv"
    theirs.write_bytes(b"name,age\nsecret-of-tenant-2,44\n")
    allow(conn, f"file://{tmp_path}/in")
    conn.execute(f"SET ROLE {client}")
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    job_id = scalar(conn, "SELECT pgjobs.submit_import('people', '1', %s)",
                    (f"file://{tmp_path}/in/mine.csv",))
    conn.execute("RESET ROLE")
    conn.execute("""UPDATE pgjobs.jobs
                       SET payload = payload || jsonb_build_object('source', %s::text)
                     WHERE id = %s""", (f"file://{theirs}", job_id))
    outcome = run_import(dsn, job_id, f"file://{store}")
    row = job(conn, job_id)
    assert (outcome.status, row["status"]) == ("failed", "failed"), outcome
    assert "outside the storage allow-list" in row["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 0
