"""Storage mistakes are named before anything is submitted: `--storage` (and
`--to`, and an import's source) of a place no worker writes to (`https://`),
or of a store missing its configuration (`az://` without an account), is
refused by `pgjobs export`, `pgjobs import` and `pgjobs worker` before they
submit or claim anything. The export submitted the job, which then failed."""

from __future__ import annotations

import os
import re
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from pgjobs.cli.main import main
from pgjobs.poller import storage
from tests.support import make_items, submit_export

Conn = psycopg.Connection[Any]
SQLSTATE = re.compile(r"\[[0-9A-Z]{5}\]")


@pytest.fixture(autouse=True)
def _no_cloud_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient account or database: what the commands see is the test's."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "AZURITE_")) or name in ("PGJOBS_DSN", "DATABASE_URL",
                                                               "PGJOBS_STORAGE"):
            monkeypatch.delenv(name)
    storage.forget_stores()


def _cli(dsn: str, storage_uri: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--dsn", dsn, "--storage", storage_uri, *args])


def _jobs(conn: Conn) -> list[Any]:
    return conn.execute("SELECT id, kind, status FROM pgjobs.jobs ORDER BY id").fetchall()


UNWRITABLE = ["https://example.com/exports", "HTTPS://example.com/x", "ftp://host/x",
              "exports-without-scheme", "s3://"]


def _refused(result: Result, option: str) -> None:
    assert result.exit_code in (1, 2), result.output
    assert option in result.output, result.output
    assert SQLSTATE.search(result.output) and "hint:" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("bad", UNWRITABLE)
@pytest.mark.parametrize("detach", [False, True])
def test_export_refuses_an_unwritable_destination_before_submitting(
        conn: Conn, dsn: str, tmp_path: Any, bad: str, detach: bool) -> None:
    """Repro: `pgjobs --storage https://... export items --scope 1` submitted the
    job, which then failed. `--to` alike, with or without --detach."""
    make_items(conn)
    extra = ["--detach"] if detach else []
    if not detach:
        result = _cli(dsn, bad, "export", "items", "--scope", "1", *extra)
        _refused(result, "--storage")
        assert result.exit_code == 2
    result = _cli(dsn, f"file://{tmp_path}", "export", "items", "--scope", "1", "--to", bad,
                  *extra)
    _refused(result, "--to")
    assert result.exit_code == 2
    assert _jobs(conn) == []


def test_export_refuses_an_azure_store_without_an_account(conn: Conn, dsn: str) -> None:
    """Repro: an az:// export with no account failed its job with `Generic
    MicrosoftAzure error: Account must be specified`, no SQLSTATE, no hint."""
    make_items(conn)
    result = _cli(dsn, "az://container/exports", "export", "items", "--scope", "1")
    _refused(result, "--storage")
    assert "[28000]" in result.output and "AZURE_STORAGE_ACCOUNT_NAME" in result.output
    assert _jobs(conn) == []


@pytest.mark.parametrize("bad", UNWRITABLE)
def test_import_refuses_an_unwritable_storage_before_submitting(
        conn: Conn, dsn: str, tmp_path: Any, bad: str) -> None:
    make_items(conn)
    source = tmp_path / "in.csv"
    source.write_text("id,tenant\n1,1\n")
    result = _cli(dsn, bad, "import", "items", str(source), "--scope", "1")
    _refused(result, "--storage")
    assert result.exit_code == 2
    assert _jobs(conn) == []


@pytest.mark.parametrize("source", ["ftp://host/in.csv", "gopher://x/y", "s3://"])
def test_import_refuses_an_unreadable_source_before_submitting(
        conn: Conn, dsn: str, tmp_path: Any, source: str) -> None:
    make_items(conn)
    result = _cli(dsn, f"file://{tmp_path}", "import", "items", source, "--scope", "1",
                  "--detach")
    assert result.exit_code == 2, result.output
    assert SQLSTATE.search(result.output) and "hint:" in result.output, result.output
    assert _jobs(conn) == []


@pytest.mark.parametrize("bad", [*UNWRITABLE, "az://container/exports"])
def test_worker_refuses_an_unwritable_storage_before_claiming(
        conn: Conn, dsn: str, bad: str) -> None:
    """A worker of https:// storage claimed exports and failed each one."""
    make_items(conn)
    job_id = submit_export(conn, "1")
    result = _cli(dsn, bad, "worker", "--once", "--poll", "0.1")
    _refused(result, "--storage")
    assert _jobs(conn) == [(job_id, "export", "queued")]


@pytest.mark.parametrize("bad", ["https://example.com/exports", "az://container/exports"])
def test_demo_refuses_an_unwritable_storage_before_building_anything(
        conn: Conn, dsn: str, bad: str) -> None:
    """The demo's export goes to --storage: refused before its table is built."""
    result = _cli(dsn, bad, "demo", "--rows", "1000")
    _refused(result, "--storage")
    assert conn.execute("SELECT to_regclass('demo.user_table_rows')").fetchone() == (None,)
