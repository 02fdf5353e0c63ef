"""`pgjobs ui` in a real browser (issue 14): headless Chromium driven by Selenium
through chromedriver (tests/support/browser.py). A delete submitted from SQL
appears and its progress bar moves to done without a reload; cancel on a slow
job cancels it; in --read-only no action is offered and a forged POST is
refused; a role is offered only the actions it may use, on rows the page
inserts live too (a reader of the table sees a writer's delete with no
button, its own export with cancel and pause, and cancels it). Screenshots are saved as artifacts in
$PGJOBS_ARTIFACTS (default: build/artifacts)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support import scalar, wait_for
from tests.support.browser import MISSING, demo_table, shot, status_of
from tests.support.ui import scoped_login, serving

pytest.importorskip("selenium.webdriver")

Conn = psycopg.Connection[Any]
pytestmark = MISSING


def bar_width(driver: Any, job_id: int) -> float:
    """The row's progress bar width in percent (-1: no row). Read in one script:
    the page replaces a row when its status changes."""
    width = driver.execute_script(
        "const f = document.querySelector('#job-' + arguments[0] + ' .fill');"
        "return f ? f.style.width : null;", job_id)
    return -1.0 if width is None else float(str(width).rstrip("%") or 0)


def test_progress_moves_to_done_live_and_cancel_works(browser: Any, conn: Conn,
                                                      make_conn: Callable[..., Conn],
                                                      dsn: str) -> None:
    from selenium.webdriver.common.by import By

    demo_table(conn, 20000)
    with serving(dsn) as base:
        browser.get(base + "/")
        wait_for(lambda: browser.find_element(By.ID, "live").text == "live", what="live")
        marker = browser.execute_script("window.__same_page = 42; return window.__same_page")
        assert marker == 42

        # A delete submitted from SQL: its row appears, its bar moves, it reaches done.
        job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', "
                                  "'{}', '{\"page_size\": 1000, \"page_delay\": \"150 ms\"}')"))
        wait_for(lambda: status_of(browser, job_id), what="the new job's row")
        runner = make_conn()
        widths: list[float] = []

        def run_some() -> bool:
            runner.execute("CALL pgjobs.run('1 second')")
            widths.append(bar_width(browser, job_id))
            return status_of(browser, job_id) == "succeeded"

        wait_for(run_some, timeout=120, what="the delete to succeed in the page")
        assert any(0 < w < 100 for w in widths), widths  # seen part-way
        assert bar_width(browser, job_id) == 100.0
        shot(browser, "ui-delete-succeeded")
        assert browser.execute_script("return window.__same_page") == 42  # never reloaded

        # Cancel a slow job from the page.
        slow = int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '2', '{}', "
                                "'{}', '{\"page_size\": 100, \"page_delay\": \"2 s\"}')"))
        wait_for(lambda: status_of(browser, slow), what="the slow job's row")
        runner.execute("CALL pgjobs.run('300 ms')")
        button = wait_for(lambda: browser.find_elements(
            By.CSS_SELECTOR, f'#job-{slow} button[data-action="cancel"]'), what="cancel button")
        button[0].click()
        wait_for(lambda: status_of(browser, slow) == "canceled", what="canceled in the page")
        assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (slow,)) == "canceled"
        assert browser.execute_script("return window.__same_page") == 42
        path = shot(browser, "ui-dashboard")
        assert path.stat().st_size > 1000


def test_read_only_offers_no_action_and_refuses_a_forged_post(browser: Any, conn: Conn,
                                                              dsn: str) -> None:
    from selenium.webdriver.common.by import By

    demo_table(conn, 1000)
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')"))
    with serving(dsn, read_only=True) as base:
        browser.get(base + "/")
        wait_for(lambda: status_of(browser, job_id) == "queued", what="the job's row")
        assert browser.find_elements(By.CSS_SELECTOR, "button.act") == []
        assert "read-only" in browser.page_source
        browser.get(base + f"/jobs/{job_id}")
        assert browser.find_elements(By.CSS_SELECTOR, "button.act") == []
        # The page's own origin forges the POST the hidden button would have sent.
        status = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/api/jobs/' + arguments[0] + '/cancel', {method: 'POST',
                  headers: {'X-Pgjobs-Action': '1'}}).then(r => done(r.status));""", job_id)
        assert status == 403
        shot(browser, "ui-read-only")
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "queued"


def test_a_role_sees_only_the_buttons_it_may_use_on_rows_that_arrive_live(
        browser: Any, conn: Conn, dsn: str) -> None:
    from selenium.webdriver.common.by import By

    demo_table(conn, 200)
    with scoped_login(conn, dsn, "reader_live", "GRANT SELECT ON user_table_rows TO {role}",
                      "") as login, serving(login) as base:
        reader = f"pgjobs_ui_reader_live_{os.getpid()}"  # scoped_login's name for it
        browser.get(base + "/")
        wait_for(lambda: browser.find_element(By.ID, "live").text == "live", what="live")
        # A writer's delete (an administrator here) and the reader's own export,
        # both submitted while the page is open: the script inserts their rows.
        delete = int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1')"))
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {reader}")
            export = int(scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', '1')"))
        wait_for(lambda: status_of(browser, delete) == status_of(browser, export) == "queued",
                 what="both rows, inserted live")

        def offered(job: int) -> set[str]:
            return {b.get_attribute("data-action") for b in browser.find_elements(
                By.CSS_SELECTOR, f"#job-{job} button.act")}

        assert offered(delete) == set()
        assert offered(export) == {"cancel", "pause"}
        browser.find_element(By.CSS_SELECTOR,
                             f'#job-{export} button[data-action="cancel"]').click()
        wait_for(lambda: status_of(browser, export) == "canceled", what="canceled in the page")
        assert offered(export) == {"retry"}
        browser.get(base + f"/jobs/{delete}")
        assert offered(delete) == set()
