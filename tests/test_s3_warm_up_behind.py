"""Issue 13, the fixed costs of a one-shot job of S3 storage: `pgjobs export`
and `pgjobs import` start building botocore's client (its import and service
model, 0.4-1.5 s) in a thread of its own before they submit, so that it is
built while the job is submitted, claimed and loaded rather than in line
before the first part or read. Nothing is started (and botocore never
loaded) when no URI of the command is of S3."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import obstore
import psycopg
import pytest
from click.testing import CliRunner

from pgjobs import db, queries
from pgjobs.cli.main import main
from pgjobs.poller import storage
from tests.support import allow, job, make_people, make_rows_target, seed, wait_for

Conn = psycopg.Connection[Any]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """("behind", URIs) when the command asks for the warm-up, ("warm-up", URI,
    whether on the main thread) when it runs, ("submit", None) at the submit."""
    seen: list[tuple[str, Any]] = []
    warm_up = storage.warm_up
    behind = getattr(storage, "warm_up_behind", None)

    def warming(uri: str) -> None:
        seen.append(("warm-up", (uri, threading.current_thread() is threading.main_thread())))
        warm_up(uri)

    def asking(*uris: str | None) -> Any:
        seen.append(("behind", uris))
        assert behind is not None
        return behind(*uris)

    scalar = db.scalar

    def submitting(conn: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql in (queries.EXPORT_SUBMIT, queries.IMPORT_SUBMIT):
            seen.append(("submit", None))
        return scalar(conn, sql, *args, **kwargs)

    monkeypatch.setattr(storage, "warm_up", warming)
    if behind is not None:
        monkeypatch.setattr(storage, "warm_up_behind", asking)
    monkeypatch.setattr(db, "scalar", submitting)
    yield seen


def _export(conn: Conn, dsn: str, storage_uri: str, to: str | None) -> None:
    seed(conn, make_rows_target(conn), 600)
    result = CliRunner().invoke(main, [
        "--dsn", dsn, "--storage", storage_uri, "export", "user_table_rows", "--scope", "1",
        "--no-progress", *(["--to", to] if to else [])])
    assert result.exit_code == 0, result.output


def _import(conn: Conn, dsn: str, source: str, storage_uri: str) -> None:
    make_people(conn)
    loc = storage.parse(source)
    data = b"name,age\n" + b"".join(f"p{i},{i % 50}\n".encode() for i in range(500))
    if loc.scheme == "file":
        Path(loc.path).parent.mkdir(parents=True, exist_ok=True)
        Path(loc.path).write_bytes(data)
    else:
        obstore.put(storage.store_for(loc), loc.path, data)
    result = CliRunner().invoke(main, [
        "--dsn", dsn, "--storage", storage_uri, "import", "people", source, "--scope", "1",
        "--no-progress"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("case", ["export-storage", "export-to", "import-source"])
def test_s3_client_is_built_behind_the_submit(conn: Conn, dsn: str, bucket: str,
                                              tmp_path: Path,
                                              events: list[tuple[str, Any]],
                                              case: str) -> None:
    local = f"file://{tmp_path}/store/"
    allow(conn, bucket)
    allow(conn, local)
    if case == "export-storage":
        _export(conn, dsn, bucket, None)
    elif case == "export-to":
        _export(conn, dsn, local, bucket)
    else:
        _import(conn, dsn, f"{bucket}in/a.csv", local)
    (job_id,) = [int(r[0]) for r in conn.execute("SELECT id FROM pgjobs.jobs").fetchall()]
    assert job(conn, job_id)["status"] == "succeeded"
    warmed = wait_for(lambda: [e for e in events if e[0] == "warm-up"], 30, "the warm-up")
    # Once, of the S3 URI, on a thread of its own, asked for before the submit.
    (uri, on_main), = [w[1] for w in warmed]
    assert uri.startswith(bucket.split("/exports/")[0]) and not on_main, events
    names = [e[0] for e in events]
    assert names.index("behind") < names.index("submit"), events


@pytest.mark.parametrize("case", ["export", "import"])
def test_nothing_is_warmed_up_for_file_storage(conn: Conn, dsn: str, tmp_path: Path,
                                               events: list[tuple[str, Any]],
                                               case: str) -> None:
    local = f"file://{tmp_path}/store/"
    allow(conn, local)
    if case == "export":
        _export(conn, dsn, local, None)
    else:
        _import(conn, dsn, f"{local}in/a.csv", local)
    assert [e for e in events if e[0] == "warm-up"] == [], events
    assert storage.warm_up_behind(local, None) is None
