"""The dashboard's ?scope= filter and its live updates in a real browser
(tests/support/browser.py). A scope reads as the tenant, as every submit
stores it (`01` and ` 1` list integer scope 1: pgjobs.canonical_scope): a job
of scope 1 submitted while the page is open appears without a reload, one of
scope 2 never does. A dashboard whose role may read only scope 1
(pgjobs.allowed_scopes) never shows, nor receives on /events, anything of
another tenant: no job, count, target name, error text or progress, whatever
the filter. A filtered page's stream carries only the jobs its list could
hold (the server filters /events as the list reads the filters): it received
every job's events and its script hid them. A scope that is no value of the
scope column (the full-width `１` is no integer for PostgreSQL nor for any
submit) lists nothing and says why, not an error page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest

from tests.support import scalar, wait_for
from tests.support.browser import (
    MISSING,
    console_errors,
    demo_table,
    is_live,
    recorded,
    status_of,
)
from tests.support.ui import EventStream, scoped_login, serving

pytest.importorskip("selenium.webdriver")

Conn = psycopg.Connection[Any]
pytestmark = MISSING
SUBMIT = ("SELECT pgjobs.submit_delete('user_table_rows', %s, '{}', '{}', "
          "'{\"page_size\": 50}')")
# Spellings of integer scope 1, each as a user may type it in the filter.
TENANT_1 = ("01", " 1", "+1", "1")
# What only tenant 2 (or a table the reader may not read) holds: none of it
# may ever reach the reader's page or stream.
SECRET_ERROR = "tenant-two-secret-error"
SECRET_TABLE = "secret_ledger_rows"


def open_list(browser: Any, base: str, scope: str) -> None:
    browser.get(base + "/?" + urlencode({"scope": scope}))
    wait_for(lambda: is_live(browser), what="the page's event stream")


def card(browser: Any, name: str) -> str:
    """The figure a card above the list shows."""
    return str(browser.execute_script(
        "return document.querySelector('[data-stat=\"' + arguments[0] + '\"]').textContent",
        name))


def dom_has_job(browser: Any, job_id: int) -> bool:
    text = recorded(browser, "dom")
    return f'id="job-{job_id}"' in text or f'href="/jobs/{job_id}"' in text


def test_a_scope_filter_shows_its_tenants_new_jobs_live_and_never_anothers(
        browser: Any, conn: Conn, dsn: str) -> None:
    demo_table(conn, 200)
    before = int(scalar(conn, SUBMIT, ("1",)))
    other_before = int(scalar(conn, SUBMIT, ("2",)))
    hidden = [other_before]
    with serving(dsn) as base:
        for spelling in TENANT_1:  # one browser and one dashboard: each costs seconds
            open_list(browser, base, spelling)
            assert status_of(browser, before) == "queued", spelling
            # Tenant 2's job first: by the time tenant 1's row is in, the page
            # has had tenant 2's event (events reach it in order).
            two = int(scalar(conn, SUBMIT, ("2",)))
            one = int(scalar(conn, SUBMIT, ("1",)))
            hidden.append(two)
            wait_for(lambda one=one: status_of(browser, one) == "queued",
                     what=f"tenant 1's new row under {spelling!r}")
            scalar(conn, "SELECT pgjobs.cancel(%s)", (two,))
            scalar(conn, "SELECT pgjobs.cancel(%s)", (one,))
            wait_for(lambda one=one: status_of(browser, one) == "canceled",
                     what="tenant 1's row canceled")
            for job_id in hidden:
                assert not dom_has_job(browser, job_id), (spelling, job_id)
                # nor did its stream carry it (tenant 2's came before tenant 1's)
                assert f'"id": {job_id},' not in recorded(browser, "stream"), (spelling, job_id)
            assert console_errors(browser) == [], spelling


@pytest.fixture
def tenants(conn: Conn) -> dict[str, int]:
    """Tenant 1 and 2 on user_table_rows, and a table the reader may not read
    (SECRET_TABLE, scope 1); tenant 2's old job failed with SECRET_ERROR and
    part-way (done 77 of 1234)."""
    demo_table(conn, 2000)
    conn.execute(f"CREATE TABLE {SECRET_TABLE} (id bigint PRIMARY KEY, scope int NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now())")
    conn.execute(f"CREATE INDEX ON {SECRET_TABLE} (scope, id)")
    conn.execute(f"SELECT pgjobs.register_target('{SECRET_TABLE}', 'id', 'scope', "
                 "'created_at')")
    jobs = {"one": int(scalar(conn, SUBMIT, ("1",))),
            "two_failed": int(scalar(conn, SUBMIT, ("2",))),
            "secret": int(scalar(conn, f"SELECT pgjobs.submit_delete('{SECRET_TABLE}', '1')"))}
    conn.execute("UPDATE pgjobs.jobs SET status = 'failed', error = %s, done = 77, "
                 "total = 1234, finished_at = now() WHERE id = %s",
                 (SECRET_ERROR, jobs["two_failed"]))
    return jobs


@pytest.fixture
def reader(conn: Conn, dsn: str, tenants: dict[str, int]) -> Iterator[str]:
    """A login role (pgjobs_client) that reads user_table_rows with
    pgjobs.allowed_scopes = 1 and may not read SECRET_TABLE; yields its DSN."""
    grant = "GRANT SELECT ON user_table_rows TO {role}"
    with scoped_login(conn, dsn, "tenant_one", grant, "1") as login:
        yield login


def test_a_reader_of_one_tenant_never_sees_nor_receives_anothers(
        browser: Any, conn: Conn, reader: str, tenants: dict[str, int]) -> None:
    hidden = [tenants["two_failed"], tenants["secret"]]
    with serving(reader) as base:
        for scope in ("", "01", " 1", "2", "１"):
            every = EventStream(base)  # the reader's whole stream, unfiltered
            open_list(browser, base, scope)
            if scope in ("", "01", " 1"):
                assert status_of(browser, tenants["one"]) == "queued", scope
            two = int(scalar(conn, SUBMIT, ("2",)))
            secret = int(scalar(conn, f"SELECT pgjobs.submit_delete('{SECRET_TABLE}', '1')"))
            hidden += [two, secret]
            # Tenant 2's job runs to its end (progress), and a forged wake-up names it.
            conn.execute("CALL pgjobs.run_job(%s)", (two,))
            conn.execute("SELECT pg_notify('pgjobs', json_build_object('id', %s::bigint, "
                         "'event', 'failed', 'status', 'failed', 'done', 5, 'total', 9)::text)",
                         (two,))
            # Then a job of tenant 1: once its event is in, tenant 2's were had.
            one = int(scalar(conn, SUBMIT, ("1",)))
            every.events_until(lambda e, one=one: e["id"] == one)
            every.close()
            if scope in ("", "01", " 1"):
                wait_for(lambda one=one: f'"id": {one},' in recorded(browser, "stream"),
                         what="tenant 1's new job on the page's /events")
                wait_for(lambda one=one: status_of(browser, one) == "queued", what="its row")
            else:  # a page of scope 2 or １ lists none of tenant 1's jobs: not sent
                assert f'"id": {one},' not in recorded(browser, "stream"), scope
            shown = recorded(browser, "dom") + recorded(browser, "stream")
            for job_id in hidden:
                assert f'"id": {job_id},' not in shown and f"job-{job_id}" not in shown
                assert f"/jobs/{job_id}" not in shown, (scope, job_id)
            for secret_text in (SECRET_ERROR, SECRET_TABLE, "1,234"):
                assert secret_text not in shown, (scope, secret_text)
            assert '"scope": "2"' not in recorded(browser, "stream"), scope
            # The cards count tenant 1's jobs only (none of which ran: no rows).
            queued = str(scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE status = "
                                      "'queued' AND target = 'user_table_rows'::regclass "
                                      "AND scope = '1'"))
            browser.execute_script("location.reload()")
            wait_for(lambda: is_live(browser), what="the reloaded page's stream")
            assert card(browser, "queued") == queued, scope
            assert card(browser, "rows last minute") == card(browser, "rows last hour") == "0"
            assert console_errors(browser) == []


def test_a_scope_no_tenant_can_have_lists_nothing_and_says_why(
        browser: Any, conn: Conn, dsn: str) -> None:
    from selenium.webdriver.common.by import By

    demo_table(conn, 200)
    old = int(scalar(conn, SUBMIT, ("1",)))
    with serving(dsn) as base:
        for scope in ("１", "abc", "99999999999999999999"):
            every = EventStream(base)  # the dashboard's whole stream, unfiltered
            open_list(browser, base, scope)
            assert status_of(browser, old) is None
            message = browser.find_element(By.ID, "empty")
            assert message.is_displayed(), scope
            text = message.text
            assert "public.user_table_rows" in text and "integer" in text, text
            assert "no value" in text, text
            assert browser.find_element(By.CSS_SELECTOR, "#empty a").get_attribute(
                "href") == base + "/"
            new = int(scalar(conn, SUBMIT, ("1",)))
            marker = int(scalar(conn, SUBMIT, ("2",)))
            every.events_until(lambda e, marker=marker: e["id"] == marker)
            every.close()
            assert not dom_has_job(browser, new), scope
            # a scope no job can have: the page's stream carries none
            assert '"id": ' not in recorded(browser, "stream"), scope
            assert console_errors(browser) == [], scope
