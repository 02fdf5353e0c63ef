"""A new user's pass over `pgjobs ui` (h149): what the dashboard shows of a fan-out
job and of a failed one, what its cards add up, and a database without pgjobs.

- The cards "rows last minute" and "rows last hour" summed `pgjobs.stats()`'s
  `rows` of every kind: a fan-out job's `done` counts items and an import's bytes,
  so 100 MB imported read as 100,000,000 rows. They sum the kinds whose `done`
  counts rows (delete, backfill, export) now; /api/stats keeps each kind's own.
- `pgjobs ui` against a database without pgjobs served anyway: every page and
  scrape failed while /healthz said healthy (a LISTEN succeeds in any database).
  It exits 1 with the migrate hint now, as every other command does.
- `pgjobs ui` on a port another process held printed its URL as if serving, then
  uvicorn's log line, and exited 3 (the status of a job still running): it binds
  first now and exits 1 with one line, 55006 and a hint naming --port.
- A job's page gave a fan-out job's rate (and an import's) in "rows/s".
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from typing import Any

import psycopg

from tests.support import make_target, scalar
from tests.support.cli import cli_env, pgjobs_command
from tests.support.ui import get_json, request, serving

Conn = psycopg.Connection[Any]


def fanout_job(conn: Conn, items: int, fail_first: bool = False) -> int:
    """A fan-out job of ``items`` items, every one claimed and finished (the first
    failed for good when ``fail_first``)."""
    job_id = int(scalar(conn, "SELECT pgjobs.submit_items('thumb', 'items', '1', %s::jsonb)",
                        (json.dumps([{"n": n} for n in range(items)]),)))
    claimed = conn.execute("SELECT id, worker FROM pgjobs.claim_items(ARRAY['thumb'], 'w', "
                           "'1 minute', %s) ORDER BY id", (items,)).fetchall()
    assert len(claimed) == items
    if fail_first:
        item, worker = claimed.pop(0)
        assert scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'the model said no', false)",
                      (item, worker))
    if claimed:
        conn.execute("SELECT pgjobs.complete_items(%s, %s)",
                     ([i for i, _ in claimed], [w for _, w in claimed]))
    return job_id


def card(html: str, name: str) -> str:
    found = re.search(f'data-stat="{re.escape(name)}">([^<]*)<', html)
    assert found, name
    return found.group(1)


def test_rows_cards_leave_out_kinds_whose_done_is_not_rows(conn: Conn, dsn: str) -> None:
    make_target(conn, "items")
    job_id = fanout_job(conn, 7)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    with serving(dsn) as base:
        stats = get_json(base, "/api/stats")
        # Each kind keeps its own figure in the JSON (and in /metrics, by kind).
        assert stats["rows"]["thumb"]["last_hour"] == 7, stats["rows"]
        html = request(base, "GET", "/")[2].decode()
        assert card(html, "rows last hour") == "0"
        assert card(html, "rows last minute") == "0"
        # The page's script, which refreshes the cards, is told the same kinds.
        found = re.search(r'<script id="config" type="application/json">(.*?)</script>',
                          html, re.S)
        assert found
        config = json.loads(found.group(1))
        assert config["rowKinds"] == ["delete", "backfill", "export"]


def test_a_fanout_job_and_a_failed_one_show_items_and_the_first_error(conn: Conn,
                                                                      dsn: str) -> None:
    """Guard (held on main): done/total are the items, the failed item's error is the
    job's, retry is offered for the failed job."""
    make_target(conn, "items")
    ok = fanout_job(conn, 3)
    bad = fanout_job(conn, 4, fail_first=True)
    with serving(dsn) as base:
        job = get_json(base, f"/api/jobs/{bad}")
        assert (job["status"], job["done"], job["total"]) == ("failed", 4, 4)
        assert re.fullmatch(r"item \d+: the model said no", job["error"]), job["error"]
        assert job["result"]["failed"] == 1 and job["result"]["succeeded"] == 3
        row = request(base, "GET", f"/jobs/{bad}/row")[2].decode()
        assert "4 / 4" in row and 'data-action="retry"' in row and "the model said no" in row
        assert "3 / 3" in request(base, "GET", f"/jobs/{ok}/row")[2].decode()
        listed = {j["id"]: j for j in get_json(base, "/api/jobs?kind=thumb")["jobs"]}
        assert set(listed) == {ok, bad}


def pgjobs_ui(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = pgjobs_command()
    env = cli_env(PGJOBS_DSN=dsn)
    return subprocess.run([*command, "ui", *args], env=env, text=True, capture_output=True,
                          timeout=120, check=False)


def test_ui_in_a_database_without_pgjobs_exits_1_with_the_migrate_hint(empty_dsn: str) -> None:
    # The check comes before the server binds its port: none is served here (on
    # main the command served an unusable dashboard until the timeout).
    done = pgjobs_ui(empty_dsn, "--port", "1")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "run `pgjobs migrate` here" in lines[0], done.stderr
    assert done.returncode == 1, (done.returncode, done.stderr)


def test_ui_on_a_port_in_use_exits_1_naming_it(dsn: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        done = pgjobs_ui(dsn, "--port", str(port))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr  # no URL said as if serving
    assert lines[0].startswith(f"error: cannot listen on 127.0.0.1 port {port}: "), lines[0]
    assert "[55006]" in lines[0] and "pick another --port" in lines[0], lines[0]
    assert done.returncode == 1, (done.returncode, done.stderr)


def test_a_running_fanout_jobs_rate_is_in_items(conn: Conn, dsn: str) -> None:
    """The detail page said "rows/s" of a fan-out job's items (and of an import's
    bytes)."""
    make_target(conn, "items")
    job_id = int(scalar(conn, "SELECT pgjobs.submit_items('thumb', 'items', '1', "
                              "'[1, 2, 3]')"))
    item, worker = conn.execute("SELECT id, worker FROM pgjobs.claim_items(ARRAY['thumb'], "
                                "'w', '1 minute', 1)").fetchone()  # type: ignore[misc]
    assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (item, worker))
    with serving(dsn) as base:
        html = request(base, "GET", f"/jobs/{job_id}")[2].decode()
    assert re.search(r"<th>rate</th><td>[\d,]+ items/s", html), html
    assert "rows/s" not in html
