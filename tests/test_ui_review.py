"""Adversarial review of `pgjobs ui` (issue 14): what a hostile job field, a
hostile NOTIFY, a hostile page elsewhere or a hostile link can make the
dashboard do. Each test tries the class, not one spelling:

* markup in every job field a user controls (scope, payload, options, error,
  target names) and in every filter value never reaches HTML unescaped, on
  every page that shows it;
* the shared NOTIFY channel is writable by every role that can connect, so a
  payload is untrusted: only the contract's typed fields reach a browser,
  and the kind, target and scope come from the job row;
* events of jobs the dashboard's role may not see leave no trace, not even
  in a counter on /metrics;
* every response forbids framing (clickjacking of the action buttons) and
  carries a script policy that allows exactly the page's own script;
* the token's redirect never leaves the server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from typing import Any

import psycopg
import pytest

from tests.support import claim, make_target, scalar, submit, who
from tests.support.ui import EventStream, request, serving

Conn = psycopg.Connection[Any]
PID = os.getpid()
TOKEN = "t0ken-for-the-review-tests"
# Spellings of markup that would run script if any one reached HTML raw.
MARKERS = ["<img src=x onerror=alert(1)>", '"><svg onload=alert(2)>',
           "'><script>alert(3)</script>", "</script><script>alert(4)</script>", "<!--",
           "&lt;b&gt;"]


def wait_listening(base: str, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 60
    while request(base, "GET", "/healthz", headers=headers)[0] != 200:
        assert time.monotonic() < deadline, "the LISTEN connection never came up"
        time.sleep(0.05)


def assert_no_raw_markup(html: str, where: str) -> None:
    for marker in MARKERS:
        if marker == "&lt;b&gt;":
            # Already escaped text must be escaped again (shown as typed), not decoded.
            assert "&lt;b&gt;" not in html.replace("&amp;lt;b&amp;gt;", ""), where
            continue
        assert marker not in html, (where, marker)
    # No script element other than the page's own two (the JSON config and SCRIPT).
    assert html.lower().count("<script") <= 2, where


def test_markup_in_every_job_field_and_filter_is_escaped(conn: Conn, dsn: str) -> None:
    make_target(conn, "items")
    conn.execute('CREATE TABLE "odd<img src=x onerror=alert(1)>" '
                 "(id bigint PRIMARY KEY, scope int NOT NULL)")
    ids = []
    for n, marker in enumerate(MARKERS):
        ids.append(submit(conn, "custom", "items", scope=marker,
                          payload={"note": marker, marker: n}, options={}))
    odd = submit(conn, "custom", '"odd<img src=x onerror=alert(1)>"', scope="1",
                 payload={"x": MARKERS[1]})
    ids.append(odd)
    # A failed job whose error is markup, and a running one throttled for a reason in markup.
    [failing] = claim(conn, "w")
    conn.execute("SELECT pgjobs.fail(%s, %s, %s, false)",
                 (failing, who(conn, failing, "w"), MARKERS[0] + MARKERS[2]))
    [running] = claim(conn, "w")
    conn.execute("UPDATE pgjobs.jobs SET checkpoint = %s::jsonb WHERE id = %s",
                 (json.dumps({"throttled": {"reason": MARKERS[1], "since": MARKERS[3]}}),
                  running))
    with serving(dsn) as base:
        pages = ["/", "/?limit=500"]
        pages += [f"/?{f}={v}" for f in ("kind", "status", "target", "scope")
                  for v in ("%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
                            "%22%3E%3Csvg%20onload%3Dalert(2)%3E",
                            "%3C%2Fscript%3E%3Cscript%3Ealert(4)%3C%2Fscript%3E")]
        pages += [f"/?before={ids[-1]}&scope=%3C!--&kind=%27%3E%3Cscript%3E"]
        for job_id in ids + [failing, running]:
            pages += [f"/jobs/{job_id}", f"/jobs/{job_id}/row"]
        for path in pages:
            status, headers, body = request(base, "GET", path)
            assert status == 200, (path, status, body[:200])
            assert headers["content-type"].startswith("text/html"), path
            assert_no_raw_markup(body.decode(), path)
        # The markup is shown as text, not dropped: escaping, not filtering.
        row = request(base, "GET", f"/jobs/{ids[0]}/row")[2].decode()
        assert "&lt;img src=x onerror=alert(1)&gt;" in row
        # JSON answers are JSON (a browser will not sniff them into HTML).
        status, headers, _ = request(base, "GET", f"/api/jobs/{ids[0]}")
        assert headers["content-type"] == "application/json"
        assert headers["x-content-type-options"] == "nosniff"


def executable_scripts(html: str) -> list[str]:
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    return [body for attrs, body in scripts if "application/json" not in attrs]


@pytest.mark.parametrize("token", [None, TOKEN])
def test_every_response_forbids_framing_and_foreign_script(conn: Conn, dsn: str,
                                                           token: str | None) -> None:
    make_target(conn, "items")
    job_id = submit(conn, "custom", "items")
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    with serving(dsn, token=token) as base:
        html = request(base, "GET", "/", headers=auth)[2].decode()
        responses = {path: request(base, method, path, headers=headers)
                     for method, path, headers in [
                         ("GET", "/", auth), ("GET", f"/jobs/{job_id}", auth),
                         ("GET", f"/jobs/{job_id}/row", auth), ("GET", "/api/jobs", auth),
                         ("GET", f"/api/jobs/{job_id}", auth), ("GET", "/api/stats", auth),
                         ("GET", "/metrics", auth), ("GET", "/healthz", auth),
                         ("GET", "/jobs/999999", auth), ("GET", "/no/such/page", auth),
                         ("GET", f"/jobs/{job_id}/download", auth),
                         ("POST", f"/api/jobs/{job_id}/pause", auth),  # no action header: 403
                         ("GET", "/", {"Host": "evil.example"} if not token else {}),  # refused
                     ]}
        for path, (status, headers, _) in responses.items():
            assert headers.get("x-frame-options") == "DENY", (path, status)
            csp = headers.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, path
            assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0], path
            assert headers.get("x-content-type-options") == "nosniff", path
            assert headers.get("referrer-policy") == "no-referrer", path
        # The policy allows exactly the page's own script(s), by hash.
        csp = responses["/"][1]["content-security-policy"]
        allowed = set(re.findall(r"'sha256-([^']+)'", csp))
        for page in (html, responses[f"/jobs/{job_id}"][2].decode()):
            scripts = executable_scripts(page)
            assert scripts
            for body in scripts:
                digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
                assert digest in allowed
        # The event stream too (it is fetched by the page, never framed).
        stream = EventStream(base, auth)
        assert stream.response.getheader("x-frame-options") == "DENY"
        stream.close()


def test_forged_notify_payloads_reach_browsers_only_as_typed_contract_fields(
        conn: Conn, dsn: str) -> None:
    make_target(conn, "items")
    job_id = submit(conn, "custom", "items", scope="s1")
    forged: list[Any] = [
        # markup where names go
        {"id": job_id, "event": "<img src=x onerror=alert(1)>", "status": "running",
         "done": 1, "total": 2},
        {"id": job_id, "event": "progress", "status": "running\"><svg>", "done": 1, "total": 2},
        # numbers that are not counts
        {"id": job_id, "event": "progress", "status": "running", "done": "<b>1</b>", "total": 2},
        {"id": job_id, "event": "progress", "status": "running", "done": 1, "total": -5},
        {"id": job_id, "event": "progress", "status": "running", "done": True, "total": 2},
        {"id": job_id, "event": "progress", "status": "running", "done": 1.5, "total": 2},
        # ids that are not ids
        {"id": str(job_id), "event": "progress", "status": "running", "done": 1, "total": 2},
        {"id": job_id + 0.2, "event": "progress", "status": "running", "done": 1, "total": 2},
        {"id": True, "event": "progress", "status": "running", "done": 1, "total": 2},
        {"id": -job_id, "event": "progress", "status": "running", "done": 1, "total": 2},
        [job_id], "not json", None,
    ]
    with serving(dsn) as base:
        wait_listening(base)
        stream = EventStream(base)
        for payload in forged:
            text = payload if isinstance(payload, str) else json.dumps(payload)
            conn.execute("SELECT pg_notify('pgjobs', %s)", (text,))
        # A well-formed forgery with extra fields, a wrong kind/target/scope and
        # false numbers: the extras are dropped, and the row's own kind, target,
        # scope, status, done and total replace the payload's (a queued job: no
        # progress; the event name, which that status does not follow, is
        # `update`).
        conn.execute("SELECT pg_notify('pgjobs', %s)", (json.dumps(
            {"id": job_id, "kind": "<i>k</i>", "event": "progress", "status": "running",
             "done": 3, "total": 9, "target": "public.other", "scope": "<b>x</b>",
             "html": "<script>alert(5)</script>", "rows_per_second": "<b>", "seq": -1}),))
        event = stream.next_event()
        stream.close()
    assert {k: event[k] for k in ("id", "kind", "event", "status", "done", "total",
                                  "target", "scope")} == {
        "id": job_id, "kind": "custom", "event": "update", "status": "queued",
        "done": 0, "total": None, "target": "public.items", "scope": "s1"}
    assert set(event) == {"id", "kind", "event", "status", "done", "total", "target",
                          "scope", "rows_per_second", "eta_seconds", "seq"}
    assert event["rows_per_second"] is None and event["seq"] > 0


def test_a_forged_event_shows_the_job_rows_truth_not_its_numbers(
        conn: Conn, dsn: str) -> None:
    """Any role that can connect may pg_notify a well-formed event about a job
    the dashboard shows: it wakes the dashboard up, and browsers (the event
    stream, the job's timeline) get the row's status, done and total, as
    `pgjobs watch` reads them; a forged `succeeded` of a running job reads
    `update` with its real status."""
    make_target(conn, "items")
    job_id = submit(conn, "custom", "items", scope="s1")
    claim(conn, "w")
    conn.execute("UPDATE pgjobs.jobs SET total = 10 WHERE id = %s", (job_id,))
    conn.execute("SELECT pgjobs.heartbeat(%s, %s, 4)", (job_id, who(conn, job_id, "w")))
    truth = {"status": "running", "done": 4, "total": 10}
    with serving(dsn) as base:
        wait_listening(base)
        stream = EventStream(base)
        for forged, name in (({"event": "succeeded", "status": "succeeded", "done": 999,
                                "total": 999}, "update"),
                             ({"event": "progress", "status": "running", "done": 9,
                               "total": 9}, "progress")):
            conn.execute("SELECT pg_notify('pgjobs', %s)",
                         (json.dumps({"id": job_id, "kind": "custom", **forged}),))
            event = stream.next_event()
            assert event["id"] == job_id
            assert {k: event[k] for k in truth} == truth, event
            assert event["event"] == name, event
        stream.close()
        status, _, body = request(base, "GET", f"/api/jobs/{job_id}")
    assert status == 200
    timeline = json.loads(body)["events"]
    assert [{k: t[k] for k in truth} for t in timeline] == [truth, truth], timeline
    assert [t["event"] for t in timeline] == ["update", "progress"]


@pytest.fixture
def viewer(conn: Conn, dsn: str) -> Any:
    """A login role (pgjobs_client) that may read `pub` but not `secret`."""
    role = f"pgjobs_ui_review_{PID}"
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


def ui_samples(metrics: str) -> dict[str, str]:
    """The dashboard's own samples (pgjobs_ui_*), name with labels -> value."""
    return dict(line.rsplit(" ", 1) for line in metrics.splitlines()
                if line.startswith("pgjobs_ui_"))


def test_events_of_invisible_jobs_leave_no_trace_in_metrics(conn: Conn, viewer: str) -> None:
    public = submit(conn, "custom", "pub", scope="1")
    with serving(viewer) as base:
        wait_listening(base)
        stream = EventStream(base)
        before = ui_samples(request(base, "GET", "/metrics")[2].decode())
        # Many events of jobs the role may not see, then one of a job it may.
        for n in range(5):
            hidden = submit(conn, "custom", "secret", scope=str(n))
            scalar(conn, "SELECT pgjobs.cancel(%s)", (hidden,))
        scalar(conn, "SELECT pgjobs.cancel(%s)", (public,))
        events = stream.events_until(lambda e: e["id"] == public)
        assert [e["id"] for e in events] == [public]
        after = ui_samples(request(base, "GET", "/metrics")[2].decode())
        stream.close()
    forwarded = "pgjobs_ui_events_total"
    assert float(after[forwarded]) == float(before[forwarded]) + 1
    assert {k: v for k, v in after.items() if k != forwarded} == \
        {k: v for k, v in before.items() if k != forwarded}
    assert not any("hidden" in k for k in after)


@pytest.mark.parametrize("path", ["//evil.example/", "///evil.example", "/\\evil.example",
                                  "//evil.example/jobs/1", "/%2F%2Fevil.example"])
def test_the_token_redirect_stays_on_the_server(conn: Conn, dsn: str, path: str) -> None:
    with serving(dsn, token=TOKEN) as base:
        status, headers, _ = request(base, "GET", f"{path}?token={TOKEN}&kind=x")
        assert status == 303
        location = headers["location"]
        assert location.startswith("/") and not location.startswith(("//", "/\\")), location
        assert location.endswith("?kind=x")


def test_download_never_leaves_the_storage_whatever_the_spelling(
        conn: Conn, dsn: str, tmp_path: Any) -> None:
    make_target(conn, "items")
    storage = tmp_path / "exports"
    storage.mkdir()
    (storage / "a.csv").write_text("id\n1\n")
    secret = tmp_path / "exports-sibling" / "b.csv"  # shares the storage's name as a prefix
    secret.parent.mkdir()
    secret.write_text("secret\n")
    (storage / "link.csv").symlink_to(secret)
    (storage / "dir").symlink_to(secret.parent)
    spellings = {
        "symlink": f"file://{storage}/link.csv",
        "symlinked folder": f"file://{storage}/dir/b.csv",
        "sibling prefix": f"file://{secret}",
        "encoded dots": f"file://{storage}/%2e%2e/exports-sibling/b.csv",
        "double slash dots": f"file://{storage}//../exports-sibling/b.csv",
        "host part": f"file://localhost{secret}",
    }
    ids = {}
    for name, uri in spellings.items():
        ids[name] = submit(conn, "export_like", "items")
        conn.execute("UPDATE pgjobs.jobs SET kind = 'export', status = 'succeeded', "
                     "finished_at = now(), result = %s WHERE id = %s",
                     (json.dumps({"uri": uri, "rows": 1}), ids[name]))
    parts = submit(conn, "export_like", "items")
    conn.execute("UPDATE pgjobs.jobs SET kind = 'export', status = 'succeeded', "
                 "finished_at = now(), result = %s WHERE id = %s",
                 (json.dumps({"uris": [f"file://{storage}/a.csv", f"file://{secret}"],
                              "rows": 2}), parts))
    with serving(dsn, storage=f"file://{storage}") as base:
        for name, job_id in ids.items():
            status, _, body = request(base, "GET", f"/jobs/{job_id}/download")
            assert status in (400, 404, 409) and b"secret" not in body, (name, status, body)
        assert request(base, "GET", f"/jobs/{parts}/download?part=0")[2] == b"id\n1\n"
        for part in ("1", "-1", "2", "99999999999999999999", "0x1", "1.0"):
            status, _, body = request(base, "GET", f"/jobs/{parts}/download?part={part}")
            assert status != 200 and b"secret" not in body, (part, status)
