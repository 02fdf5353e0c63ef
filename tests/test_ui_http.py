"""`pgjobs ui` over HTTP against real PostgreSQL (issue 14): every endpoint, the
order of live events, one LISTEN connection whatever the browsers, the access
rules (token, bind address, Host, read-only, forged actions) and visibility (a
role without privileges on a target sees none of its jobs anywhere)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from tests.support import claim, make_target, scalar, submit, wait_for, who
from tests.support.ui import EventStream, get_json, post, request, serving

Conn = psycopg.Connection[Any]
PID = os.getpid()
TOKEN = "t0ken-for-the-dashboard-tests"


def wait_listening(base: str, headers: dict[str, str] | None = None) -> None:
    wait_for(lambda: request(base, "GET", "/healthz", headers=headers)[0] == 200, 15,
             "the LISTEN connection to come up")


def ui_connections(conn: Conn) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pg_stat_activity "
                            "WHERE application_name LIKE 'pgjobs ui%%' "
                            "AND datname = current_database()"))


def test_pages_api_and_keyset_pages(conn: Conn, dsn: str) -> None:
    make_target(conn, "items")
    make_target(conn, "other")
    ids = [submit(conn, "custom", "items", scope=str(i % 2)) for i in range(7)]
    other = submit(conn, "export_like", "other", scope="x")
    with serving(dsn) as base:
        status, headers, body = request(base, "GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        html = body.decode()
        for job_id in ids + [other]:
            assert f'id="job-{job_id}"' in html
        assert 'data-action="cancel"' in html and "EventSource('/events')" in html
        assert 'data-stat="queued">8<' in html

        # Keyset pages, newest first: every job exactly once, in order.
        seen: list[int] = []
        path = "/api/jobs?limit=3"
        while True:
            page = get_json(base, path)
            seen += [j["id"] for j in page["jobs"]]
            if page["next_before"] is None:
                break
            path = f"/api/jobs?limit=3&before={page['next_before']}"
        assert seen == sorted(ids + [other], reverse=True)
        # Filters: kind, status, target, scope (and an HTML page honours them too).
        assert [j["id"] for j in get_json(base, "/api/jobs?kind=export_like")["jobs"]] == [other]
        assert {j["id"] for j in get_json(base, "/api/jobs?target=public.items&scope=1")
                ["jobs"]} == {i for n, i in enumerate(ids) if n % 2 == 1}
        assert get_json(base, "/api/jobs?status=running")["jobs"] == []
        filtered = request(base, "GET", "/?kind=export_like")[2].decode()
        assert f'id="job-{other}"' in filtered and f'id="job-{ids[0]}"' not in filtered
        assert request(base, "GET", "/api/jobs?limit=0")[0] == 400
        assert request(base, "GET", "/api/jobs?before=abc")[0] == 400

        one = get_json(base, f"/api/jobs/{ids[0]}")
        assert one["id"] == ids[0] and one["target"] == "public.items" and "options" in one
        assert request(base, "GET", "/api/jobs/999999")[0] == 404
        assert request(base, "GET", "/api/jobs/x")[0] == 400
        detail = request(base, "GET", f"/jobs/{ids[0]}")
        assert detail[0] == 200 and b"timeline" in detail[2] and b"options" in detail[2]
        row = request(base, "GET", f"/jobs/{ids[0]}/row")
        assert row[0] == 200 and row[2].decode().startswith(f'<tr id="job-{ids[0]}"')
        stats = get_json(base, "/api/stats")
        assert sum(q["jobs"] for q in stats["queue"]) == 8


def test_a_job_list_filter_that_could_only_mislead_is_refused(conn: Conn, dsn: str) -> None:
    """A parameter the list does not take (`?stauts=failed` listed every job), a
    status no job has (`?status=Failed` listed none) or a target without its
    schema (`?target=items` listed none): 400, 22023, naming it, with a hint,
    from the JSON list that scripts read (the page shows its filters back in
    its form). Every status and every parameter still works."""
    make_target(conn, "items")
    job_id = submit(conn, "custom", "items", scope="1")
    taken = ("kind", "status", "target", "scope", "before", "limit")
    statuses = ("queued", "running", "paused", "succeeded", "failed", "canceled")
    slips = [name[:-1] for name in taken] + [name.upper() for name in taken] + [
        "stauts", "offset", "page", "q"]
    bad = ([(f"{slip}=1", repr(slip)) for slip in slips]
           + [(f"status={s}", repr(s)) for s in
              [*(st.capitalize() for st in statuses), "done", "cancelled", "error"]]
           + [("target=items", "'items'")])
    with serving(dsn) as base:
        for route in ("/api/jobs",):
            for query, named in bad:
                status, _, body = request(base, "GET", f"{route}?{query}")
                assert status == 400, (route, query, status, body[:200])
                answer = json.loads(body)
                assert answer["sqlstate"] == "22023" and named in answer["error"], answer
                assert answer.get("hint"), answer
            for st in statuses:
                assert request(base, "GET", f"{route}?status={st}")[0] == 200, (route, st)
            found = get_json(base, "/api/jobs?kind=custom&status=queued&target=public.items"
                                   "&scope=1&limit=5&before=999999999")["jobs"]
            assert [j["id"] for j in found] == [job_id]


def test_actions_go_through_the_sql_functions(conn: Conn, dsn: str) -> None:
    make_target(conn, "items")
    job_id = submit(conn, "custom", "items")
    with serving(dsn) as base:
        assert post(base, f"/api/jobs/{job_id}/pause") == (
            200, {"id": job_id, "action": "pause", "changed": True})
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "paused"
        # A verb the state does not allow: the SQL function's 55000, as 409 with its hint.
        assert post(base, f"/api/jobs/{job_id}/pause")[1]["changed"] is False  # already
        status, body = post(base, f"/api/jobs/{job_id}/retry")
        assert status == 409 and body["sqlstate"] == "55000" and body["hint"]
        assert post(base, f"/api/jobs/{job_id}/resume")[0] == 200
        assert post(base, f"/api/jobs/{job_id}/cancel")[1]["changed"] is True
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                      (job_id,)) == "canceled"
        assert post(base, f"/api/jobs/{job_id}/retry")[0] == 200
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "queued"
        assert post(base, "/api/jobs/999999/cancel")[0] == 404
        assert post(base, f"/api/jobs/{job_id}/explode")[0] == 404
        # Forged requests: no action header (a plain cross-site form), another Origin,
        # another method.
        assert request(base, "POST", f"/api/jobs/{job_id}/cancel")[0] == 403
        assert post(base, f"/api/jobs/{job_id}/cancel",
                    {"Origin": "http://evil.example"})[0] == 403
        assert request(base, "DELETE", f"/api/jobs/{job_id}")[0] == 405
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "queued"


def test_read_only_offers_and_accepts_no_action(conn: Conn, dsn: str) -> None:
    make_target(conn, "items")
    job_id = submit(conn, "custom", "items")
    with serving(dsn, read_only=True) as base:
        html = request(base, "GET", "/")[2].decode()
        assert f'id="job-{job_id}"' in html and "read-only" in html
        assert "data-action" not in html
        assert "data-action" not in request(base, "GET", f"/jobs/{job_id}")[2].decode()
        for verb in ("cancel", "pause", "resume", "retry"):
            status, body = post(base, f"/api/jobs/{job_id}/{verb}")
            assert status == 403 and "read-only" in body["error"]
        assert get_json(base, "/api/jobs")["read_only"] is True
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "queued"


def test_events_arrive_in_order_and_browsers_add_no_connection(conn: Conn, dsn: str) -> None:
    make_target(conn, "items")
    with serving(dsn) as base:
        wait_listening(base)
        first = EventStream(base)
        assert ui_connections(conn) == 2  # the LISTEN connection and the query connection
        second = EventStream(base)
        third = EventStream(base)
        assert ui_connections(conn) == 2
        # An event carries the job row's status and done as the dashboard reads
        # them when it arrives (a NOTIFY is only a wake-up): each step waits for
        # its event before the next changes the row.
        seen: list[dict[str, Any]] = []

        def step(event: str) -> None:
            seen.extend(first.events_until(lambda e: e.get("event") == event))

        job_id = submit(conn, "custom", "items", scope="s1")
        step("submitted")
        claim(conn, "w")
        step("started")
        conn.execute("UPDATE pgjobs.jobs SET total = 10 WHERE id = %s", (job_id,))
        conn.execute("SELECT pgjobs.heartbeat(%s, %s, 4)", (job_id, who(conn, job_id, "w")))
        step("progress")
        conn.execute("UPDATE pgjobs.jobs SET progress_notified_at = NULL WHERE id = %s",
                     (job_id,))
        conn.execute("SELECT pgjobs.heartbeat(%s, %s, 8)", (job_id, who(conn, job_id, "w")))
        step("progress")
        conn.execute("SELECT pgjobs.complete(%s, %s)", (job_id, who(conn, job_id, "w")))
        step("succeeded")
        streams = []
        for stream in (first, second, third):
            events = seen if stream is first else stream.events_until(
                lambda e: e.get("event") == "succeeded")
            streams.append([(e["event"], e["status"], e["done"]) for e in events])
            assert all(e["id"] == job_id and e["target"] == "public.items"
                       and e["scope"] == "s1" for e in events)
            seqs = [e["seq"] for e in events]
            assert seqs == sorted(seqs)
        assert streams[0] == [("submitted", "queued", 0), ("started", "running", 0),
                              ("progress", "running", 4), ("progress", "running", 8),
                              ("succeeded", "succeeded", 8)]
        assert streams[0] == streams[1] == streams[2]
        health = get_json(base, "/healthz")
        assert health["browsers"] == 3
        for stream in (first, second, third):
            stream.close()
        # The job's recent events reach its detail view.
        timeline = get_json(base, f"/api/jobs/{job_id}")["events"]
        assert [t["event"] for t in timeline][-1] == "succeeded"


@pytest.fixture
def viewer(conn: Conn, dsn: str) -> Iterator[str]:
    """A login role (pgjobs_client) that may read table `pub` but not `secret`;
    yields its DSN."""
    role = f"pgjobs_ui_viewer_{PID}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE pgjobs_client")
    conn.execute("CREATE TABLE pub (id bigint PRIMARY KEY, scope int NOT NULL)")
    conn.execute("CREATE TABLE secret (id bigint PRIMARY KEY, scope int NOT NULL)")
    conn.execute(f"GRANT SELECT ON pub TO {role}")
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["user"] = role
    yield psycopg.conninfo.make_conninfo(**params)
    conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = "
                 f"'{role}'")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def test_a_role_sees_none_of_the_jobs_of_a_target_it_may_not_read(
        conn: Conn, viewer: str) -> None:
    public = submit(conn, "custom", "pub", scope="1")
    hidden = submit(conn, "custom", "secret", scope="1")
    hidden_running = submit(conn, "custom", "secret", scope="2")
    conn.execute("UPDATE pgjobs.jobs SET status = 'running', worker = 'w#9', "
                 "lease_expires_at = now() + interval '1 minute', started_at = now(), "
                 "checkpoint = '{\"throttled\": {\"reason\": \"wal_rate\", \"since\": \"x\"}}' "
                 "WHERE id = %s", (hidden_running,))
    with serving(viewer) as base:
        wait_listening(base)
        stream = EventStream(base)
        html = request(base, "GET", "/")[2].decode()
        assert f'id="job-{public}"' in html
        assert "secret" not in html and f'id="job-{hidden}"' not in html
        assert [j["id"] for j in get_json(base, "/api/jobs")["jobs"]] == [public]
        assert get_json(base, "/api/jobs?target=public.secret")["jobs"] == []
        for job_id in (hidden, hidden_running):
            assert request(base, "GET", f"/api/jobs/{job_id}")[0] == 404
            assert request(base, "GET", f"/jobs/{job_id}")[0] == 404
            assert request(base, "GET", f"/jobs/{job_id}/row")[0] == 404
            assert request(base, "GET", f"/jobs/{job_id}/download")[0] == 404
            # An action on it: the SQL function refuses (it does not exist for this role).
            assert post(base, f"/api/jobs/{job_id}/cancel")[0] in (403, 404)
        stats = json.dumps(get_json(base, "/api/stats"))
        assert "secret" not in stats and "wal_rate" not in stats
        metrics = request(base, "GET", "/metrics")[2].decode()
        assert "secret" not in metrics and "wal_rate" not in metrics
        # Events: the hidden jobs' events never reach a browser; the visible one's do.
        for job_id in (hidden, hidden_running):
            scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
        scalar(conn, "SELECT pgjobs.cancel(%s)", (public,))
        events = stream.events_until(lambda e: e["id"] == public)
        assert [e["id"] for e in events] == [public]
        stream.close()
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                  (hidden_running,)) == "running"  # cancel requested by the admin only


def test_token_is_required_everywhere_when_set(conn: Conn, dsn: str) -> None:
    make_target(conn, "items")
    job_id = submit(conn, "custom", "items")
    with serving(dsn, token=TOKEN) as base:
        for path in ("/", "/api/jobs", f"/api/jobs/{job_id}", "/api/stats", "/metrics",
                     "/events", f"/jobs/{job_id}", "/healthz"):
            status, _, body = request(base, "GET", path)
            assert status == 401, path
            assert request(base, "GET", path,
                           headers={"Authorization": "Bearer wrong-token-wrong"})[0] == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert get_json(base, "/api/jobs", bearer)["jobs"][0]["id"] == job_id
        assert post(base, f"/api/jobs/{job_id}/cancel")[0] == 401
        assert post(base, f"/api/jobs/{job_id}/pause", bearer)[0] == 200
        # A browser: /?token=T once sets an HttpOnly SameSite=Strict cookie.
        status, headers, _ = request(base, "GET", f"/?token={TOKEN}&kind=custom")
        assert status == 303 and headers["location"] == "/?kind=custom"
        cookie = headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        jar = {"Cookie": cookie.split(";", 1)[0]}
        assert request(base, "GET", "/", headers=jar)[0] == 200
        # With a token, any Host may be used (it is what authenticates).
        assert request(base, "GET", "/api/jobs", headers=bearer | {"Host": "jobs.internal"}
                       )[0] == 200


def test_without_a_token_only_loopback_host_names_are_answered(conn: Conn, dsn: str) -> None:
    with serving(dsn) as base:
        port = base.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "[::1]:80", "localhost"):
            assert request(base, "GET", "/api/jobs", headers={"Host": host})[0] == 200, host
        for host in ("evil.example", f"evil.example:{port}", "10.0.0.5", "127.0.0.1.evil.io"):
            status, _, body = request(base, "GET", "/api/jobs", headers={"Host": host})
            assert status == 403, host
            assert "localhost" in json.loads(body)["hint"]


def test_cli_refuses_a_public_bind_without_a_token(tmp_path: Path, dsn: str) -> None:
    from pgjobs.cli.main import main

    runner = CliRunner()
    for args in (["ui", "--host", "0.0.0.0"], ["ui", "--host", "192.168.1.10"],
                 ["ui", "--host", "::"]):
        result = runner.invoke(main, ["--dsn", dsn, *args])
        assert result.exit_code == 2, (args, result.output)
        assert "needs a token" in result.output and "--token" in result.output
    short = runner.invoke(main, ["--dsn", dsn, "ui", "--host", "0.0.0.0", "--token", "abc"])
    assert short.exit_code == 2 and "too short" in short.output
    empty = tmp_path / "token"
    empty.write_text("")
    result = runner.invoke(main, ["--dsn", dsn, "ui", "--host", "0.0.0.0",
                                  "--token-file", str(empty)])
    assert result.exit_code == 2 and "cannot read a token" in result.output
    env = runner.invoke(main, ["--dsn", dsn, "ui", "--help"])
    for var in ("PGJOBS_UI_HOST", "PGJOBS_UI_PORT", "PGJOBS_UI_READ_ONLY", "PGJOBS_UI_TOKEN",
                "PGJOBS_UI_TOKEN_FILE"):
        assert var in env.output


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, dsn: str) -> None:
    import importlib.util

    from pgjobs.cli.main import main

    real = importlib.util.find_spec

    def hidden(name: str, *args: Any) -> Any:
        return None if name == "starlette" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    result = CliRunner().invoke(main, ["--dsn", dsn, "ui"])
    assert result.exit_code == 2
    assert "starlette" in result.output and "pgjobs-engine[ui]" in result.output


def test_metrics_are_prometheus_text_prefixed_pgjobs(conn: Conn, dsn: str) -> None:
    from pgjobs.ui.metrics import METRICS

    make_target(conn, "items")
    for _ in range(3):
        submit(conn, "custom", "items")
    [running] = claim(conn, "wk")
    conn.execute("UPDATE pgjobs.jobs SET done = 50, started_at = now() - interval '5 s' "
                 "WHERE id = %s", (running,))
    with serving(dsn) as base:
        status, headers, body = request(base, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    names = {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", text, re.M)}
    assert names and all(n.startswith("pgjobs_") for n in names)
    samples = {line.split(" ")[0] for line in text.splitlines()
               if line and not line.startswith("#")}
    assert all(s.startswith("pgjobs_") for s in samples)
    assert {n.removesuffix("_total") for n in METRICS} == {n.removesuffix("_total")
                                                            for n in names}
    assert 'pgjobs_jobs{kind="custom",status="queued",target="public.items"} 2.0' in text
    assert 'pgjobs_jobs{kind="custom",status="running",target="public.items"} 1.0' in text
    assert re.search(r'^pgjobs_running_rows_per_second\{kind="custom"\} \d', text, re.M)
    assert re.search(r'^pgjobs_worker_heartbeat_age_seconds\{worker="wk"\} ', text, re.M)
    docs = (Path(__file__).resolve().parent.parent / "docs" / "ui.md").read_text()
    for name in METRICS:
        assert f"`{name}`" in docs, f"docs/ui.md does not list {name}"


def test_download_serves_only_files_under_its_storage(conn: Conn, dsn: str,
                                                      tmp_path: Path) -> None:
    make_target(conn, "items")
    storage = tmp_path / "exports"
    storage.mkdir()
    (storage / "a.csv").write_text("id\n1\n")
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("nope\n")
    ids = {}
    for name, uri in (("inside", f"file://{storage}/a.csv"), ("outside", f"file://{outside}"),
                      ("dotdot", f"file://{storage}/../elsewhere.csv")):
        ids[name] = submit(conn, "export_like", "items")
        conn.execute("UPDATE pgjobs.jobs SET kind = 'export', status = 'succeeded', "
                     "finished_at = now(), result = %s WHERE id = %s",
                     (json.dumps({"uri": uri, "rows": 1}), ids[name]))
    queued = submit(conn, "custom", "items")
    with serving(dsn, storage=f"file://{storage}") as base:
        status, headers, body = request(base, "GET", f"/jobs/{ids['inside']}/download")
        assert status == 200 and body == b"id\n1\n"
        assert "a.csv" in headers["content-disposition"]
        assert request(base, "GET", f"/jobs/{ids['outside']}/download")[0] == 404
        assert request(base, "GET", f"/jobs/{ids['dotdot']}/download")[0] == 404
        assert request(base, "GET", f"/jobs/{queued}/download")[0] == 409
        # Each refusal names why, with a hint and a SQLSTATE, as `pgjobs url` does.
        running = submit(conn, "export_like", "items")
        conn.execute("UPDATE pgjobs.jobs SET kind = 'export' WHERE id = %s", (running,))
        imported = submit(conn, "import_like", "items")  # the article is chosen: "an import"
        conn.execute("UPDATE pgjobs.jobs SET kind = 'import' WHERE id = %s", (imported,))
        for job_id, says, sqlstate in [(queued, "is a custom job, not an export", "22023"),
                                       (imported, "is an import job, not an export", "22023"),
                                       (running, "is queued: it has no object yet", "55000")]:
            status, _, body = request(base, "GET", f"/jobs/{job_id}/download")
            answer = json.loads(body)
            assert status == 409 and says in answer["error"], answer
            assert answer["sqlstate"] == sqlstate and answer.get("hint"), answer
        assert f'href="/jobs/{ids["inside"]}/download"' in request(base, "GET", "/")[2].decode()
