"""A job id that names no job (or one this role may not see) gets one
wording, from one place (pgjobs.errors.unknown_job), on every surface: each
command of the command line and each page and API route of the dashboard.

Found in the operator-safety pass: the CLI said `job 999 does not exist` with
a hint, the dashboard `No such job (or not yours to see).` on the job's
page, `job 999 does not exist` without a hint from /api/jobs/999, `no such
job` from a download, and the SQL function's own wording from an action.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

import pytest
from click.testing import CliRunner

from pgjobs.cli.common import UNKNOWN_JOB_HINT
from pgjobs.cli.main import main
from tests.support.cli import unset_ambient_settings
from tests.support.ui import request, serving

MISSING = 987654


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


@pytest.fixture(scope="module")
def dashboard(cluster_url: str, template_dsn: str) -> Any:
    import psycopg
    from psycopg import sql

    from tests.support import with_database  # a database of the template, for the module

    name = f"h22_unknown_{os.getpid()}"
    with psycopg.connect(cluster_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(psycopg.conninfo.conninfo_to_dict(
                template_dsn)["dbname"])))
    dsn = with_database(cluster_url, name)
    try:
        with serving(dsn) as base:
            yield dsn, base
    finally:
        with psycopg.connect(cluster_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


WORDS = f"job {MISSING} does not exist"


@pytest.mark.parametrize("method, path", [
    ("GET", f"/api/jobs/{MISSING}"),
    ("GET", f"/jobs/{MISSING}/download"),
    ("POST", f"/api/jobs/{MISSING}/cancel"),
    ("POST", f"/api/jobs/{MISSING}/pause"),
    ("POST", f"/api/jobs/{MISSING}/resume"),
    ("POST", f"/api/jobs/{MISSING}/retry"),
])
def test_the_dashboards_api_says_it_as_the_cli_does(dashboard: Any, method: str,
                                                    path: str) -> None:
    _, base = dashboard
    status, _, body = request(base, method, path, headers={"X-Pgjobs-Action": "1"})
    assert status == 404, (status, body)
    assert json.loads(body) == {"error": WORDS, "hint": UNKNOWN_JOB_HINT, "sqlstate": "P0002"}


def test_the_dashboards_page_says_it_as_the_cli_does(dashboard: Any) -> None:
    _, base = dashboard
    status, _, body = request(base, "GET", f"/jobs/{MISSING}")
    assert status == 404
    text = html.unescape(body.decode())
    assert WORDS in text and UNKNOWN_JOB_HINT in text, text


@pytest.mark.parametrize("command", ["status", "cancel", "pause", "resume", "retry", "url"])
def test_the_cli_says_the_same(dashboard: Any, command: str) -> None:
    dsn, _ = dashboard
    result = CliRunner().invoke(main, ["--dsn", dsn, command, str(MISSING)])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: {WORDS} [P0002] (hint: {UNKNOWN_JOB_HINT})"
