"""The dashboard in a real browser: headless Chromium driven by Selenium through
chromedriver (Debian's `chromium` and `chromium-driver`, installed by .ci/run).
A pytest plugin (tests/conftest.py registers it): request the ``browser``
fixture by name. Its console log is kept (:func:`console_errors`), and
:data:`RECORDER` runs in every page before the page's own script: it keeps
every ``/events`` message the page receives (``window.__stream``) and the
markup of every node ever added to the page (``window.__dom``), so a test can
say what never appeared, not only what is there at the end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("PGJOBS_ARTIFACTS")
                 or Path(__file__).resolve().parent.parent.parent / "build" / "artifacts")
MISSING = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="chromium and chromedriver are not installed (.ci/run installs them)")

RECORDER = r"""
window.__stream = []; window.__dom = [];
const Plain = window.EventSource;
window.EventSource = function (url, init) {
  const source = new Plain(url, init);
  source.addEventListener('job', m => window.__stream.push(m.data));
  return source;
};
window.EventSource.prototype = Plain.prototype;
new MutationObserver(changes => changes.forEach(c => {
  c.addedNodes.forEach(n => window.__dom.push(n.outerHTML || n.textContent || ''));
  if (c.type === 'characterData') window.__dom.push(c.target.textContent || '');
  if (c.type === 'attributes') window.__dom.push(c.target.outerHTML || '');
})).observe(document, {childList: true, subtree: true, characterData: true,
                       attributes: true});
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
    try:
        yield driver
    finally:
        driver.quit()


def recorded(driver: Any, what: str) -> str:
    """What the page showed ("dom": its markup now and every node ever added
    to it) or received ("stream": every /events message) so far, as one text
    (RECORDER)."""
    script = ("return [document.documentElement.outerHTML].concat(window.__dom || [])"
              if what == "dom" else "return (window.__stream || [])")
    return "\n".join(str(part) for part in driver.execute_script(script + ";"))


def console_errors(driver: Any) -> list[str]:
    """The console's errors since the last call (the log is read once)."""
    return [str(entry["message"]) for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE"]


def shot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def demo_table(conn: Any, rows: int) -> None:
    """user_table_rows of ``rows`` rows in tenants (integer table_id) 1 and 2,
    registered."""
    conn.execute("""
        CREATE TABLE user_table_rows (id bigint NOT NULL, table_id int NOT NULL, data jsonb,
                                      created_at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX ON user_table_rows (table_id, id);""")
    conn.execute("INSERT INTO user_table_rows (id, table_id, data) SELECT i, 1 + i %% 2, "
                 "jsonb_build_object('n', i) FROM generate_series(1, %s) i", (rows,))
    conn.execute("SELECT pgjobs.register_target('user_table_rows', 'id', 'table_id', "
                 "'created_at', 'data')")


def status_of(driver: Any, job_id: int) -> str | None:
    """The status of the job's row in the page (None: no row)."""
    status = driver.execute_script(
        "const r = document.getElementById('job-' + arguments[0]);"
        "return r ? r.dataset.status : null;", job_id)
    return None if status is None else str(status)


def is_live(driver: Any) -> bool:
    """Whether the page's event stream is open (its `live` badge)."""
    return bool(driver.execute_script(
        "const l = document.getElementById('live'); return !!l && l.textContent === 'live';"))
