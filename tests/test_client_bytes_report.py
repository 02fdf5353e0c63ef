"""Operators see each client's bytes kept against max_item_bytes_per_client
(h146): pgjobs.stats()'s client_bytes (and /metrics, the dashboard's stats
bar), and pgjobs doctor's clients.kept_bytes, a warning past 80% of the
ceiling with the largest jobs and how to free room.

Before: only an SQL query in docs/operations.md showed the totals; the
first an operator heard of a client at its ceiling was that client's 55006.
A client's stats() never shows another tenant's total ([]).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from pgjobs.ui.metrics import render
from pgjobs.ui.page import index
from tests.support import scalar
from tests.support.roles import kept_bytes, roles_under_ceiling, scalar_as, submit_padded

Conn = psycopg.Connection[Any]
CEILING = 100000


@pytest.fixture
def roles(conn: Conn) -> Iterator[dict[str, str]]:
    with roles_under_ceiling(conn, "cb", CEILING,
                             {"a": "client", "b": "client", "admin": "admin"}) as made:
        yield made


def _big(conn: Conn, role: str, scope: str, size: int) -> int:
    return submit_padded(conn, role, "cb_kind", scope, size)


def _clients(conn: Conn) -> list[dict[str, Any]]:
    return [f for f in conn.execute("SELECT * FROM pgjobs.doctor()").fetchall()
            if f[0] == "clients.kept_bytes"]


def test_stats_shows_an_administrator_every_clients_bytes_and_a_client_none(
        conn: Conn, roles: dict[str, str]) -> None:
    a, b = roles["a"], roles["b"]
    assert scalar(conn, "SELECT pgjobs.stats() -> 'client_bytes'") == []
    _big(conn, a, "1", 9000)
    _big(conn, b, "2", 2000)
    ka, kb = kept_bytes(conn, a), kept_bytes(conn, b)
    expected = [{"role": role, "kept_bytes": kept, "max_item_bytes_per_client": CEILING,
                 "room_bytes": CEILING - kept, "used": round(kept / CEILING, 4)}
                for role, kept in ((a, ka), (b, kb))]
    got = scalar(conn, "SELECT pgjobs.stats() -> 'client_bytes'")
    assert [{**c, "used": float(c["used"])} for c in got] == expected
    assert scalar_as(conn, roles["admin"], "SELECT pgjobs.stats() -> 'client_bytes'") == got
    # A client's stats: never another tenant's total, nor its own here
    # (pgjobs.client_room() tells it that).
    for role in (a, b):
        stats = scalar_as(conn, role, "SELECT pgjobs.stats()")
        assert stats["client_bytes"] == [], stats
        assert json.dumps(stats).count(str(ka)) == 0


def test_doctor_warns_past_80_percent_with_the_largest_jobs_and_how_to_free_room(
        conn: Conn, roles: dict[str, str]) -> None:
    a, b = roles["a"], roles["b"]
    [(_, status, target, detail, fix)] = _clients(conn)
    assert (status, target, fix) == ("ok", None, None), detail
    small = _big(conn, a, "1", 29000)
    large = _big(conn, a, "2", 50000)
    _big(conn, b, "3", 70000)  # 70%: not yet
    _big(conn, roles["admin"], "3", 95000)  # not held to it: never warned about
    [(_, status, _, detail, fix)] = _clients(conn)
    assert status == "ok" and f"the most: role {roles['admin']}" in detail, detail
    _big(conn, a, "3", 1000)  # past 80%
    ka = kept_bytes(conn, a)
    assert ka > 0.8 * CEILING
    [(_, status, target, detail, fix)] = _clients(conn)
    assert (status, target) == ("warn", None)
    assert f"role {a} keeps {ka} bytes of inputs" in detail, detail
    assert f"{round(100 * ka / CEILING, 1)}% of max_item_bytes_per_client ({CEILING})" in detail
    assert detail.index(f"{large} (queued,") < detail.index(f"{small} (queued,"), detail
    assert "pgjobs.prune(" in fix and "pgjobs.cancel(" in fix, fix
    assert '"max_item_bytes_per_client": ' in fix and "pgjobs.set_defaults(" in fix, fix
    # Canceled and pruned, the room comes back and the warning goes.
    conn.execute("UPDATE pgjobs.jobs SET status = 'canceled', finished_at = now() - "
                 "interval '2 hours' WHERE id = %s", (large,))
    conn.execute("SELECT pgjobs.prune('1 hour')")
    [(_, status, _, detail, _)] = _clients(conn)
    assert status == "ok", detail
    # Only without a target: the check is of clients, not tables.
    assert [f for f in conn.execute("SELECT * FROM pgjobs.doctor('user_table_rows')")
            if f[0] == "clients.kept_bytes"] == []


def test_the_command_lines_doctor_prints_the_warning(
        conn: Conn, dsn: str, roles: dict[str, str]) -> None:
    _big(conn, roles["a"], "1", 90000)
    result = CliRunner().invoke(main, ["--dsn", dsn, "doctor", "--json"])
    found = [f for f in json.loads(result.stdout) if f["check_name"] == "clients.kept_bytes"]
    assert [f["status"] for f in found] == ["warn"], result.output
    assert result.exit_code == 1


def test_metrics_and_the_stats_bar_show_the_clients_bytes(
        conn: Conn, roles: dict[str, str]) -> None:
    a = roles["a"]
    _big(conn, a, "1", 45000)
    stats = scalar(conn, "SELECT pgjobs.stats()")
    text = render(stats, {"browsers": 0, "events": 0, "reconnects": 0}).decode()
    assert f'pgjobs_client_kept_bytes{{role="{a}"}} {float(kept_bytes(conn, a))}' in text, text
    assert f"pgjobs_max_item_bytes_per_client {float(CEILING)}" in text, text
    page = index([], stats, {}, None, True, True)
    share = round(100 * kept_bytes(conn, a) / CEILING)
    assert f"{a} {share}%" in page and 'data-stat="fullest client"' in page
    # A client's scrape: no role's bytes at all.
    mine = scalar_as(conn, a, "SELECT pgjobs.stats()")
    text = render(mine, {"browsers": 0, "events": 0, "reconnects": 0}).decode()
    assert "pgjobs_client_kept_bytes{" not in text
    assert not any(line.startswith("pgjobs_max_item_bytes_per_client ")
                   for line in text.splitlines())
    assert 'data-stat="fullest client"' not in index([], mine, {}, None, True, True)


def test_many_clients_keep_the_role_label_bounded() -> None:
    clients = [{"role": f"r{i:03}", "kept_bytes": 1000 + i, "max_item_bytes_per_client": 10**6,
                "room_bytes": 0, "used": 0} for i in range(60)]
    text = render({"client_bytes": clients},
                  {"browsers": 0, "events": 0, "reconnects": 0}).decode()
    series = [line for line in text.splitlines() if line.startswith("pgjobs_client_kept_bytes{")]
    assert len(series) == 21  # the 20 keeping the most, and #other
    other = sum(1000 + i for i in range(40))
    assert f'pgjobs_client_kept_bytes{{role="#other"}} {float(other)}' in text
