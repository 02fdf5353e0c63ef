"""A new user's walk of the dashboard in a real browser (tests/support/browser.py):
from the job list, follow every same-origin link found on every page (job
pages, a fan-out job's items and their next page, the older jobs, the filter
form, clear), press every action button found on a job's page, and open the
pages a user reaches by hand (a job id that does not exist, one that is no
number, a job of another tenant, a path the dashboard does not serve, bad
filters). No page may fail (a 5xx, a console error of its script) and every
page that refuses says what to do next: an HTML page a link back to the
list, a JSON answer its hint. A page added later is covered as soon as any
page links to it. The administrator's walk is of `pgjobs ui` started as
docs/ui.md says (the command, PGJOBS_DSN); the reader's, of the app in this
process."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest

from tests.support import scalar, wait_for
from tests.support.browser import MISSING, console_errors, demo_table, is_live
from tests.support.cli import cli_env, pgjobs_command
from tests.support.net import free_port
from tests.support.ui import request, scoped_login, serving

pytest.importorskip("selenium.webdriver")

Conn = psycopg.Connection[Any]
pytestmark = MISSING
SUBMIT = "SELECT pgjobs.submit_delete('user_table_rows', %s, '{}', '{}', '{\"page_size\": 50}')"
BROWSER_VISITS = 6  # pages of one shape (path with ids as N, query names) loaded in the
# browser; every page is fetched and every link of each followed
MAX_PAGES = 400


@pytest.fixture
def world(conn: Conn) -> dict[str, int]:
    """Jobs of tenant 1 in every state (more than one page of them), a fan-out
    job with more than one page of items, and tenant 2's job."""
    demo_table(conn, 400)
    conn.execute("CREATE INDEX ON user_table_rows (table_id, id)")
    jobs = {"succeeded": int(scalar(conn, SUBMIT, ("1",)))}
    conn.execute("CALL pgjobs.run_job(%s)", (jobs["succeeded"],))
    for state in ("queued", "running", "paused", "failed", "canceled"):
        jobs[state] = int(scalar(conn, SUBMIT, ("01",)))
    scalar(conn, "SELECT pgjobs.pause(%s)", (jobs["paused"],))
    scalar(conn, "SELECT pgjobs.cancel(%s)", (jobs["canceled"],))
    conn.execute("UPDATE pgjobs.jobs SET status = 'failed', finished_at = now(), "
                 "error = 'permission denied for table user_table_rows' WHERE id = %s",
                 (jobs["failed"],))
    conn.execute("UPDATE pgjobs.jobs SET status = 'running', worker = 'w#1', started_at = now(), "
                 "lease_expires_at = now() + interval '1 hour', done = 10, total = 200 "
                 "WHERE id = %s", (jobs["running"],))
    jobs["fanout"] = int(scalar(
        conn, "SELECT pgjobs.submit_items('doc', 'user_table_rows'::regclass, '1', "
              "(SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 60) i))"))
    [(item, worker)] = conn.execute(
        "SELECT id, worker FROM pgjobs.claim_items(ARRAY['doc'], 'w', '5 minutes', 1)").fetchall()
    scalar(conn, "SELECT pgjobs.fail_item(%s, %s, 'timeout\ncalling model')", (item, worker))
    for _ in range(45):  # more than one page of the list (50 a page)
        scalar(conn, SUBMIT, ("1",))
    jobs["other_tenant"] = int(scalar(conn, SUBMIT, ("2",)))
    return jobs


@pytest.fixture
def reader(conn: Conn, dsn: str, world: dict[str, int]) -> Iterator[str]:
    """A pgjobs_client login that reads user_table_rows under
    pgjobs.allowed_scopes = 1, with UPDATE but not the DELETE that acting on
    a delete job needs (its actions are refused, and say why); its DSN."""
    grant = "GRANT SELECT, UPDATE ON user_table_rows TO {role}"
    with scoped_login(conn, dsn, "walker", grant, "1") as login:
        yield login


def shape(url: str) -> str:
    parts = urlsplit(url)
    names = sorted({pair.split("=", 1)[0] for pair in parts.query.split("&") if pair})
    return re.sub(r"\d+", "N", parts.path) + "?" + "&".join(names)


def says_what_to_do(status: int, headers: dict[str, str], body: bytes) -> bool:
    """A refusal that tells the user the next step: an HTML page with a link
    back to the list and more than its status, a JSON answer with a hint."""
    if headers.get("content-type", "").startswith("application/json"):
        return bool(json.loads(body).get("hint"))
    text = body.decode(errors="replace")
    return 'href="/"' in text and len(re.sub(r"<[^>]+>", "", text).strip()) > 40


def links_on(browser: Any, base: str) -> list[str]:
    """Every same-origin link of the page, and its filter form as submitted."""
    hrefs = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href]'), a => a.href);")
    form = browser.execute_script(
        "const f = document.getElementById('filters'); if (!f) return null;"
        "return Array.from(new FormData(f)).filter(([, v]) => v);")
    found = [str(h).split("#", 1)[0] for h in hrefs]
    if form is not None:
        found.append(base + "/?" + urlencode([tuple(pair) for pair in form]))
    return [url for url in found if url == base or url.startswith(base + "/")]


def press_every_button(browser: Any) -> dict[str, str]:
    """Click each action button of the page once (they change as the job
    does: each is found anew); the flash line each one left, by action."""
    said = {}
    for action in ("pause", "resume", "cancel", "retry"):
        browser.execute_script("document.getElementById('flash').textContent = ''")
        pressed = browser.execute_script(
            "const b = document.querySelector('button.act[data-action=\"' + arguments[0]"
            " + '\"]'); if (b) b.click(); return !!b;", action)
        if pressed:
            said[action] = str(wait_for(lambda: browser.execute_script(
                "return document.getElementById('flash').textContent"),
                what=f"{action}'s answer"))
    return said


def explained(message: str, said: dict[str, str]) -> bool:
    """Whether a console line is the network log of an action the server
    refused and whose flash said why and what to do (error: hint)."""
    found = re.search(r"/api/jobs/\d+/(\w+) - Failed to load resource", message)
    return bool(found) and ": " in said.get(found.group(1), "")


def walk(browser: Any, base: str, seeds: list[str]) -> dict[str, int]:
    """Crawl from ``seeds``; the status of every page met. Fails, naming every
    page at fault, on a 5xx, a refusal that says nothing of what to do, or a
    console error."""
    statuses: dict[str, int] = {}
    faults: list[Any] = []
    loaded: dict[str, int] = {}
    queue = list(seeds)
    while queue:
        url = queue.pop(0)
        if url in statuses:
            continue
        assert len(statuses) < MAX_PAGES, "the crawl does not end"
        path = url.removeprefix(base) or "/"
        status, headers, body = request(base, "GET", path)
        statuses[url] = status
        if status >= 500 or status >= 400 and not says_what_to_do(status, headers, body):
            faults.append((path, status, body[:200]))
        is_html = headers.get("content-type", "").startswith("text/html")
        if is_html:  # every link, of the pages the browser does not load too
            queue += [base + unescape(href) for href in
                      re.findall(r'href="(/[^"]*)"', body.decode(errors="replace"))]
        if not is_html or loaded.get(shape(url), 0) >= BROWSER_VISITS and status < 400:
            continue
        loaded[shape(url)] = loaded.get(shape(url), 0) + 1
        browser.get(url)
        said: dict[str, str] = {}
        if status == 200:
            if browser.execute_script("return !!document.getElementById('live')"):
                wait_for(lambda: is_live(browser), what=f"{path}'s event stream")
            if re.fullmatch(r"/jobs/\d+", urlsplit(url).path):
                said = press_every_button(browser)
                faults += [(path, action, text) for action, text in said.items()
                           if not text or "undefined" in text]
            queue += [link for link in links_on(browser, base) if link not in statuses]
        errors = [m for m in console_errors(browser)
                  if not (status >= 400 and m.startswith(url))  # the page's own status
                  and not explained(m, said)]
        faults += [(path, "console", error) for error in errors]
    assert faults == [], "\n".join(map(str, faults))
    return statuses


def unlinked(world: dict[str, int]) -> list[str]:
    """Pages a user reaches by hand rather than by a link."""
    return ["/jobs/999999999", "/jobs/abc", "/jobs/0", "/jobs/-1", "/nope", "/jobs/",
            f"/jobs/{world['other_tenant']}", f"/jobs/{world['other_tenant']}/row",
            f"/jobs/{world['queued']}/download", f"/jobs/{world['queued']}/nope",
            "/?status=Failed", "/?before=abc", "/?before=0", "/?limit=0", "/?scope=%EF%BC%91",
            "/?target=user_table_rows", "/?kind=nope&scope=2",
            f"/jobs/{world['fanout']}?items_status=bogus",
            f"/jobs/{world['fanout']}?items_after=x", "/api/jobs?stauts=failed",
            "/api/jobs/999999999", f"/api/jobs/{world['queued']}/items"]


def test_every_page_a_reader_of_one_tenant_reaches_works_and_says_what_to_do(
        browser: Any, conn: Conn, reader: str, world: dict[str, int]) -> None:
    with serving(reader) as base:
        statuses = walk(browser, base, [base + "/", base + "/?scope=01"]
                        + [base + path for path in unlinked(world)])
    followed = {shape(url) for url, status in statuses.items() if status == 200}
    for page in ("/?", "/?before", "/jobs/N?", "/jobs/N?items_after", "/?scope"):
        assert page in followed, (page, sorted(followed))
    assert statuses[base + f"/jobs/{world['other_tenant']}"] == 404
    assert not any(f"/jobs/{world['other_tenant']}" in url and status == 200
                   for url, status in statuses.items())


@contextmanager
def started_as_documented(dsn: str) -> Iterator[str]:
    """`pgjobs ui` as docs/ui.md starts it (the DSN from PGJOBS_DSN, --port one
    found free); the URL it prints, once it answers. Its log goes to a file
    (a pipe nobody reads would fill with the lines of refused requests)."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen([*pgjobs_command(), "ui", "--port", str(free_port())],
                                   env=cli_env(PGJOBS_DSN=dsn), stderr=log, text=True)
        try:
            def printed() -> str | None:
                log.seek(0)
                text = log.read()
                assert process.poll() is None, text  # it exited: why
                found = re.search(r"pgjobs ui: (http://localhost:\d+)/", text)
                return found.group(1) if found else None

            base = wait_for(printed, what="pgjobs ui's URL")
            wait_for(lambda: request(base, "GET", "/healthz")[0] == 200, what="pgjobs ui",
                     tolerate=(OSError,))
            yield base
        finally:
            process.terminate()
            process.wait(30)


def test_every_page_an_administrator_reaches_works_and_says_what_to_do(
        browser: Any, conn: Conn, dsn: str, world: dict[str, int]) -> None:
    with started_as_documented(dsn) as base:
        statuses = walk(browser, base, [base + "/"] + [base + p for p in unlinked(world)])
    assert statuses[base + f"/jobs/{world['other_tenant']}"] == 200
    assert statuses[base + "/jobs/999999999"] == 404
