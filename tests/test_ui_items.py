"""A fan-out job's items on the dashboard (what `pgjobs items JOB` prints):
``GET /api/jobs/{id}/items`` pages them by keyset with their counts and the
first failed item, and the job's page shows them. Read as the dashboard's
role: another client's job is unknown, as on every route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.support import make_target, scalar, submit
from tests.support.roles import drop_role, make_role
from tests.support.ui import get_json, request, serving

Conn = psycopg.Connection[Any]

SUBMIT = ("SELECT pgjobs.submit_items('doc', 'items'::regclass, %s, %s::jsonb, "
          "'{\"max_attempts\": 1}')")
CLAIM = "SELECT id, worker FROM pgjobs.claim_items(ARRAY['doc'], 'w', '5 minutes', %s)"
STATUSES = ["queued", "running", "succeeded", "failed", "canceled"]


def fanout(conn: Conn, payloads: list[Any], scope: str = "1") -> int:
    return int(scalar(conn, SUBMIT, (scope, json.dumps(payloads))))


def mixed(conn: Conn, error: str = "timeout\ncalling model") -> tuple[int, list[int]]:
    """Four items: succeeded, failed (with ``error``), running, queued."""
    make_target(conn)
    job = fanout(conn, [{"doc": n} for n in range(4)])
    (first, w1), (second, w2), _ = conn.execute(CLAIM, (3,)).fetchall()
    assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s, '{\"pages\": 3}')", (first, w1))
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, %s)", (second, w2, error))
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.job_items WHERE job_id = %s ORDER BY id", (job,))]
    return job, ids


def section(html: str) -> str:
    """The job page's items section (the job's own row says its status too)."""
    return html[html.index("<h3>items"):html.index("<h3>timeline")]


def refused(base: str, path: str) -> tuple[int, dict[str, Any]]:
    status, _, body = request(base, "GET", path)
    return status, json.loads(body)


def test_the_api_pages_a_jobs_items_with_counts_and_the_first_failure(
        conn: Conn, dsn: str) -> None:
    job, ids = mixed(conn)
    with serving(dsn) as base:
        whole = get_json(base, f"/api/jobs/{job}/items")
        assert whole["counts"] == {"queued": 1, "running": 1, "succeeded": 1, "failed": 1,
                                   "canceled": 0}
        assert whole["first_failed"] == {"id": ids[1], "error": "timeout\ncalling model"}
        assert [i["id"] for i in whole["items"]] == ids and whole["next_after"] is None
        assert [i["status"] for i in whole["items"]] == ["succeeded", "failed", "running",
                                                         "queued"]
        assert whole["items"][0]["payload"] == {"doc": 0}
        assert whole["items"][0]["result"] == {"pages": 3}
        # Keyset pages, followed to the end.
        first = get_json(base, f"/api/jobs/{job}/items?limit=3")
        assert [i["id"] for i in first["items"]] == ids[:3] and first["next_after"] == ids[2]
        rest = get_json(base, f"/api/jobs/{job}/items?limit=3&after={ids[2]}")
        assert [i["id"] for i in rest["items"]] == ids[3:] and rest["next_after"] is None
        only = get_json(base, f"/api/jobs/{job}/items?status=failed")
        assert [i["id"] for i in only["items"]] == [ids[1]] and only["status"] == "failed"
        assert only["counts"] == whole["counts"]  # the counts are the job's, not the page's


def test_the_api_refuses_what_has_no_items_with_a_hint(conn: Conn, dsn: str) -> None:
    job, _ = mixed(conn)
    plain = submit(conn, "custom", "items")
    absent = int(scalar(conn, "SELECT max(id) + 1000 FROM pgjobs.jobs"))
    with serving(dsn) as base:
        status, answer = refused(base, f"/api/jobs/{plain}/items")
        assert status == 409 and answer["sqlstate"] == "22023", answer
        assert answer["error"] == f"job {plain} is a custom job, not a fan-out job: it has no items"
        assert "pgjobs.submit_items" in answer["hint"]
        # A job that does not exist: the answer of /api/jobs/{id}, word for word.
        status, answer = refused(base, f"/api/jobs/{absent}/items")
        assert (status, answer) == refused(base, f"/api/jobs/{absent}")
        assert status == 404 and answer["sqlstate"] == "P0002"
        for query, says in [("status=paused", "is no item status"),
                            ("after=-1", "after must be from 0"),
                            ("limit=0", "limit must be from 1"),
                            ("limit=x", "limit must be an integer"),
                            ("page=2", "unknown parameter 'page'")]:
            status, answer = refused(base, f"/api/jobs/{job}/items?{query}")
            assert status == 400 and answer["sqlstate"] == "22023", (query, answer)
            assert says in answer["error"], (query, answer)
        status, answer = refused(base, f"/api/jobs/{job}/items?status=paused")
        assert answer["hint"] == "one of " + ", ".join(STATUSES)
        # The items route takes no action: a POST to it is still an unknown action.
        status, _, body = request(base, "POST", f"/api/jobs/{job}/items",
                                  headers={"X-Pgjobs-Action": "1"})
        assert status == 404 and "unknown action 'items'" in json.loads(body)["error"]


def test_the_job_page_shows_the_items_escaped_with_a_next_link(conn: Conn, dsn: str) -> None:
    job, ids = mixed(conn, error="<script>alert(1)</script>\n" + "x" * 300)
    many = fanout(conn, [{"n": n} for n in range(53)], scope="2")
    many_ids = [r[0] for r in conn.execute(
        "SELECT id FROM pgjobs.job_items WHERE job_id = %s ORDER BY id", (many,))]
    plain = submit(conn, "custom", "items")
    with serving(dsn) as base:
        status, _, body = request(base, "GET", f"/jobs/{job}")
        html = body.decode()
        assert status == 200
        assert ('<p id="item-counts">4 items: 1 queued, 1 running, 1 succeeded, 1 failed</p>'
                in html)
        assert f'<p id="first-failed">first failed item {ids[1]}: &lt;script&gt;' in html
        assert "<script>alert" not in html
        assert section(html).count("x" * 91 + "...") == 2  # first failed, its row: cut
        assert "x" * 92 not in section(html)
        assert "items-next" not in html
        # 53 items: a page of 50, then a link to the next page, which holds the rest.
        html = section(request(base, "GET", f"/jobs/{many}")[2].decode())
        assert html.count("<td>queued</td>") == 50
        assert f'href="/jobs/{many}?items_after={many_ids[49]}"' in html
        html = section(request(base, "GET",
                               f"/jobs/{many}?items_after={many_ids[49]}")[2].decode())
        assert html.count("<td>queued</td>") == 3 and "items-next" not in html
        html = section(request(base, "GET", f"/jobs/{many}?items_status=running")[2].decode())
        assert "<h3>items (running)</h3>" in html and html.count("<td>queued</td>") == 0
        # A job that is not a fan-out job has no items section.
        assert "item-counts" not in request(base, "GET", f"/jobs/{plain}")[2].decode()


@pytest.fixture
def client_dsns(conn: Conn, dsn: str) -> Iterator[dict[str, tuple[str, str]]]:
    make_target(conn)
    made = {name: make_role(conn, f"uiitems_{name}", "GRANT pgjobs_client TO {role}",
                            "GRANT UPDATE ON items TO {role}") for name in ("a", "b")}
    yield {name: (role, make_conninfo(dsn, options=f"-c role={role}"))
           for name, role in made.items()}
    for role in made.values():
        drop_role(conn, role)


def test_another_clients_job_is_unknown(conn: Conn,
                                        client_dsns: dict[str, tuple[str, str]]) -> None:
    (a, a_dsn), (_, b_dsn) = client_dsns["a"], client_dsns["b"]
    conn.execute(f"SET ROLE {a}")
    mine = fanout(conn, ["a1", "a2"])
    conn.execute("RESET ROLE")
    [(item, worker)] = conn.execute(CLAIM, (1,)).fetchall()
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'secret of a')", (item, worker))
    absent = int(scalar(conn, "SELECT max(id) + 1000 FROM pgjobs.jobs"))
    with serving(a_dsn) as base:
        own = get_json(base, f"/api/jobs/{mine}/items")
        assert [i["payload"] for i in own["items"]] == ["a1", "a2"]
        assert own["first_failed"]["error"] == "secret of a"
    with serving(b_dsn) as base:
        for path in ("/api/jobs/{}/items", "/api/jobs/{}/items?status=failed"):
            status, answer = refused(base, path.format(mine))
            never_status, never = refused(base, path.format(absent))
            assert status == never_status == 404
            assert json.dumps(answer) == json.dumps(never).replace(str(absent), str(mine))
            assert "secret" not in json.dumps(answer)
        status, _, body = request(base, "GET", f"/jobs/{mine}")
        assert status == 404 and b"secret" not in body and b"a1" not in body
