"""An outside checker's attacks on this round's merges, each kept as a test.

- The dashboard's refusal pages (`/`, `/jobs/ID`, `/jobs/ID/row`, an unknown
  path) and JSON errors reflect what a client sent (a job id, `before`,
  `scope`, a path segment, a parameter's name) and what a table owner named
  (a schema, a table, a scope type): all of it escaped, in text, attributes
  and JSON, with no bidirectional override left raw, under the dashboard's
  security headers, whatever the length.
- A refusal never tells a reader whether a job it may not see exists: the
  same status and the same words (but for the id) for a job of another
  tenant, of a table it may not read, and for no job at all, on every path
  that takes a job id.
- The one-statement list (queries.UI_JOBS) names in its empty list only
  targets the role may read (not a table it has no grant on, one under row
  security that confines it, one in a schema it may not USE) and lists no
  job of theirs, for any filter.
- Migration 0181 applies under `pgjobs migrate` from the previous release
  with jobs in flight: the index it drops is gone, the jobs run on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import psycopg
import pytest

from tests.support import empty_database, scalar
from tests.support.ui import request, scoped_login, serving

Conn = psycopg.Connection[Any]

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
           "javascript:alert(1)", "\u202egnp.exe", "'><svg onload=alert(1)>", "x" * 4000]


def _table(conn: Conn, name: str, *, register: bool = True) -> str:
    """``name`` (quoted as needed) with integer scope 1 and 2 rows, registered."""
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, scope int NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now())")
    conn.execute(f"CREATE INDEX ON {name} (scope, id)")
    conn.execute(f"INSERT INTO {name} SELECT g, 1 + g % 2, now() FROM generate_series(1, 4) g")
    if register:
        conn.execute("SELECT pgjobs.register_target(%s, 'id', 'scope', 'created_at')", (name,))
    return name


def _assert_inert(status: int, headers: dict[str, str], body: bytes, what: Any) -> None:
    """A response that carries nothing a browser would run or a reader
    would misread: no 5xx, the security headers, HTML escaped, JSON JSON."""
    assert status < 500, (what, status, body[:300])
    assert "default-src 'none'" in headers.get("content-security-policy", ""), (what, headers)
    assert headers.get("x-content-type-options") == "nosniff", what
    text = body.decode()
    kind = headers.get("content-type", "")
    if kind.startswith("application/json"):
        json.loads(text)
        assert "\u202e" not in text, what
        return
    assert kind.startswith("text/html"), (what, kind)
    for raw in ("<script>alert", "<img", "<svg", "\u202e"):
        assert raw not in text, (what, raw)
    assert not re.search(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", text, re.I), what
    # Every element is one of the page's own: no tag, handler or script a
    # payload opened.
    parsed = _Elements()
    parsed.feed(text)
    assert not {"img", "svg", "iframe", "object"} & {t for t, _ in parsed.tags}, what
    assert not [a for _, attrs in parsed.tags for a, _ in attrs if a.startswith("on")], what
    assert "alert(" not in parsed.script, what


class _Elements(HTMLParser):
    """The tags of a page (with their attributes) and its scripts' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.script = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        # (a script of JSON is data: the config, its '<' written as \u003c)
        self._in_script = tag == "script" and dict(attrs).get("type") != "application/json"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script += data


def _paths(p: str) -> list[str]:
    q = quote(p, safe="")
    return [f"/jobs/{q}", f"/jobs/{q}/row", f"/jobs/1{q}", f"/?before={q}", f"/?scope={q}",
            f"/?kind={q}&status={q}&target={q}", f"/{q}", f"/jobs/1/{q}", f"/api/{q}",
            f"/api/jobs/{q}", f"/api/jobs?{q}=1", f"/api/jobs?status={q}",
            f"/api/jobs?target={q}", f"/api/jobs?scope={q}", f"/api/jobs/{q}/items",
            f"/jobs/{q}/download"]


def test_every_reflected_input_is_escaped_on_every_refusal(conn: Conn, dsn: str) -> None:
    _table(conn, "hostile_rows")
    conn.execute("SELECT pgjobs.submit_delete('hostile_rows', '1')")
    with serving(dsn) as base:
        for payload in HOSTILE:
            for path in _paths(payload):
                status, headers, body = request(base, "GET", path)
                _assert_inert(status, headers, body, path[:80])
            status, headers, body = request(base, "POST", f"/api/jobs/1/{quote(payload, safe='')}",
                                            headers={"X-Pgjobs-Action": "1"})
            _assert_inert(status, headers, body, ("POST", payload[:40]))
        # A method no route takes: a page (JSON under /api/) naming the pages.
        for method, path in (("POST", "/"), ("PUT", "/jobs/1"), ("DELETE", "/api/jobs/1"),
                             ("POST", "/jobs/1/row"), ("PATCH", f"/{quote(HOSTILE[1])}")):
            status, headers, body = request(base, method, path,
                                            headers={"X-Pgjobs-Action": "1"})
            _assert_inert(status, headers, body, (method, path))
            assert status in (403, 404, 405), (method, path, status)


@pytest.fixture
def hostile_target(conn: Conn) -> str:
    """A registered target whose schema, table and scope type a hostile owner
    named with markup and a bidirectional override."""
    conn.execute('CREATE SCHEMA """><img src=x onerror=alert(1)>"')
    conn.execute('CREATE DOMAIN "<script>alert(1)</script>\u202e" AS integer')
    name = '"""><img src=x onerror=alert(1)>"."<svg onload=alert(2)>\u202egnp.exe"'
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, "
                 'scope "<script>alert(1)</script>\u202e" NOT NULL, '
                 "created_at timestamptz NOT NULL DEFAULT now())")
    conn.execute(f"CREATE INDEX ON {name} (scope, id)")
    conn.execute("SELECT pgjobs.register_target(%s, 'id', 'scope', 'created_at')", (name,))
    conn.execute("SELECT pgjobs.submit_delete(%s, '1')", (name,))
    return name


@pytest.mark.parametrize("path", ["/?scope=abc", "/?scope=%EF%BC%91", "/", "/?scope=1",
                                  "/jobs/{job}", "/jobs/{job}/row", "/api/jobs?scope=abc",
                                  "/api/jobs/{job}", "/?target=x.y&scope=abc"])
def test_a_hostile_owners_names_are_escaped_in_the_list_and_its_empty_message(
        conn: Conn, dsn: str, hostile_target: str, path: str) -> None:
    job = int(scalar(conn, "SELECT max(id) FROM pgjobs.jobs"))
    with serving(dsn) as base:
        status, headers, body = request(base, "GET", path.format(job=job))
        _assert_inert(status, headers, body, path)
        assert status == 200, body[:300]
        if path.startswith("/?scope=") and path != "/?scope=1":
            # The empty list names the target (escaped): nothing there can have it.
            assert "gnp.exe" in body.decode() and "&lt;svg" in body.decode(), body[-2000:]


@pytest.fixture
def hidden(conn: Conn, dsn: str) -> Iterator[tuple[str, dict[str, int]]]:
    """A reader (pgjobs.allowed_scopes = 1, SELECT on `readable`) and jobs it
    may not see: tenant 2's on `readable`, and tenant 1's on a table it has
    no grant on, one whose row security confines it, one it reads a column
    of but not the scope, one dropped since."""
    _table(conn, "readable")
    _table(conn, "ungranted_rows")
    _table(conn, "confined_rows")
    conn.execute("ALTER TABLE confined_rows ENABLE ROW LEVEL SECURITY")
    conn.execute("CREATE POLICY only_one ON confined_rows USING (scope = 1)")
    _table(conn, "keyonly_rows")
    _table(conn, "dropped_rows")
    jobs = {"mine": "readable', '1", "tenant_two": "readable', '2",
            "ungranted": "ungranted_rows', '1", "confined": "confined_rows', '1",
            "keyonly": "keyonly_rows', '1", "dropped": "dropped_rows', '1"}
    # (ids no page holds by chance: a refusal is compared with the id masked)
    conn.execute("SELECT setval(pg_get_serial_sequence('pgjobs.jobs', 'id'), 7300000)")
    ids = {k: int(scalar(conn, f"SELECT pgjobs.submit_delete('{v}')")) for k, v in jobs.items()}
    conn.execute("DROP TABLE dropped_rows")
    grant = ("GRANT SELECT ON readable, confined_rows TO {role}; "
             "GRANT SELECT (id) ON keyonly_rows TO {role}")
    with scoped_login(conn, dsn, "r65", grant, "1") as login:
        yield login, ids


NOT_SHOWN = ("ungranted_rows", "confined_rows", "keyonly_rows", "dropped_rows")
HIDDEN = ("tenant_two", "ungranted", "confined", "keyonly", "dropped")


@pytest.mark.parametrize("query", ["", "?scope=abc", "?scope=%EF%BC%91", "?scope=2",
                                   "?scope=01", "?target=public.ungranted_rows",
                                   "?target=public.keyonly_rows&scope=1",
                                   "?target=public.confined_rows&scope=abc", "?status=queued"])
@pytest.mark.parametrize("where", ["/", "/api/jobs"])
def test_the_list_shows_a_reader_no_job_nor_name_of_what_it_may_not_read(
        conn: Conn, hidden: tuple[str, dict[str, int]], query: str, where: str) -> None:
    login, ids = hidden
    with serving(login) as base:
        status, _, body = request(base, "GET", where + query)
        assert status in (200, 400), body[:300]
        text = body.decode()
        for name, job in ids.items():
            if name != "mine":
                assert f"job-{job}" not in text and f'"id": {job},' not in text, (name, text)
                assert f"/jobs/{job}" not in text, name
        if where == "/":
            # The cards count the reader's one job, whatever the filter.
            assert 'data-stat="queued">1<' in text, text[:3000]
        for value in parse_qs(query.lstrip("?")).values():
            text = text.replace(value[0], "")  # the filter as the form shows it back
        for name in NOT_SHOWN:
            assert name not in text, (name, text[-1500:])


@pytest.mark.parametrize("path", ["/jobs/{id}", "/jobs/{id}/row", "/api/jobs/{id}",
                                  "/api/jobs/{id}/items", "/jobs/{id}/download"])
@pytest.mark.parametrize("whose", HIDDEN)
def test_a_refusal_reads_alike_for_a_hidden_job_and_no_job(
        conn: Conn, hidden: tuple[str, dict[str, int]], path: str, whose: str) -> None:
    login, ids = hidden
    missing = int(scalar(conn, "SELECT max(id) + 1000 FROM pgjobs.jobs"))

    def said(job: int, method: str = "GET") -> tuple[int, str, str]:
        status, headers, body = request(base, method, path.format(id=job),
                                        headers={"X-Pgjobs-Action": "1"})
        return status, headers.get("content-type", ""), re.sub(rf"\b{job}\b", "ID",
                                                               body.decode())

    with serving(login) as base:
        assert said(ids["mine"])[0] in (200, 409), path  # the reader's own job shows
        assert said(ids[whose]) == said(missing), (whose, path)


@pytest.mark.parametrize("action", ["cancel", "pause", "resume", "retry"])
def test_an_action_on_a_hidden_job_reads_as_on_no_job(
        conn: Conn, hidden: tuple[str, dict[str, int]], action: str) -> None:
    login, ids = hidden
    missing = int(scalar(conn, "SELECT max(id) + 1000 FROM pgjobs.jobs"))
    with serving(login, read_only=False) as base:
        def said(job: int) -> tuple[int, str]:
            status, _, body = request(base, "POST", f"/api/jobs/{job}/{action}",
                                      headers={"X-Pgjobs-Action": "1"})
            return status, re.sub(rf"\b{job}\b", "ID", body.decode())
        for whose in HIDDEN:
            assert said(ids[whose]) == said(missing), whose
    states = conn.execute("SELECT status, cancel_requested_at IS NULL, pause_requested_at IS NULL "
                          "FROM pgjobs.jobs WHERE id <> %s", (ids["mine"],)).fetchall()
    assert {s for s in states} == {("queued", True, True)}


PREVIOUS = Path(__file__).parent / "upgrade" / "previous_sql"


def test_migration_0181_applies_from_the_previous_release_with_jobs_in_flight(
        dsn: str) -> None:
    from pgjobs.migrate import migrate

    indexes = ("SELECT array_agg(indexrelid::regclass::text ORDER BY 1) FROM pg_index "
               "WHERE indrelid = 'pgjobs.jobs'::regclass")
    with empty_database(dsn, f"r65_upgrade_{os.getpid()}") as old:
        migrate(old, PREVIOUS)
        with psycopg.connect(old, autocommit=True) as c:
            # The last release has 0181 already: the install is put back as
            # one before it (the index 0045 made, 0181 struck from the
            # migration log), so this checkout's migrate must apply it, as
            # it did from the stop-64 release.
            c.execute("CREATE INDEX jobs_submitter_idx ON pgjobs.jobs (submitted_by, target)")
            c.execute("DELETE FROM pgjobs._yoyo_migration"
                      " WHERE migration_id = '0181.drop_submitter_name_index'")
            assert "pgjobs.jobs_submitter_idx" in scalar(c, indexes)
            _table(c, "flying")
            queued = int(scalar(c, "SELECT pgjobs.submit_delete('flying', '1')"))
            # (jobs part-way through a run at the upgrade: tests/test_upgrade.py)
            paused = int(scalar(c, "SELECT pgjobs.submit_delete('flying', '2')"))
            c.execute("SELECT pgjobs.pause(%s)", (paused,))
            result = migrate(old)
            assert "0181.drop_submitter_name_index" in result["migrations_applied"]
            after = scalar(c, indexes)
            assert "pgjobs.jobs_submitter_idx" not in after
            assert "pgjobs.jobs_submitter_target_idx" in after
            c.execute("CALL pgjobs.run_job(%s)", (queued,))
            assert scalar(c, "SELECT status FROM pgjobs.jobs WHERE id = %s", (queued,)) \
                == "succeeded"
            assert scalar(c, "SELECT count(*) FROM flying WHERE scope = 1") == 0
            c.execute("SELECT pgjobs.resume(%s)", (paused,))
            c.execute("CALL pgjobs.run_job(%s)", (paused,))
            assert scalar(c, "SELECT status FROM pgjobs.jobs WHERE id = %s", (paused,)) \
                == "succeeded"
            assert scalar(c, "SELECT count(*) FROM flying") == 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("dated", "judged"), [("NULL", True), ("now()", False)])
def test_an_imports_own_rows_of_null_created_at_judge_its_later_fields_where_a_default_dates(
        conn: Conn, tmp_path: Path, fmt: str, dated: str, judged: bool) -> None:
    """docs/imports.md: the rows a source dates (it names created_at) count as
    it dates them; one it leaves empty (NULL) counts as from before the job
    where the column has a default, as any row of NULL created_at does (the
    read cannot tell who wrote it): an earlier batch's "status", written
    after the cutoff with created_at NULL, makes a later batch's "Status" a
    twin; the same row dated by the default does not."""
    from tests.support import allowed_folder, build_target, one_record, submit_import

    build_target(conn, "sourced", "id bigint NOT NULL, scope integer NOT NULL, "
                 "created_at timestamptz DEFAULT now(), data jsonb NOT NULL DEFAULT '{}'",
                 document="data")
    folder = allowed_folder(conn, tmp_path)
    source = one_record(folder, fmt, {"id": "2", "created_at": "", "Status": "x"})
    job_id = submit_import(conn, f"file://{source}", "1", {"format": fmt}, target="sourced")
    # What an earlier batch of the job wrote, after its cutoff.
    conn.execute(f"INSERT INTO sourced VALUES (1, 1, {dated}, '{{\"status\": \"a\"}}')")
    twin = ("SELECT pgjobs._import_insert_sql(j, r, ARRAY['id', 'created_at', 'Status']) "
            "FROM pgjobs.jobs j, pgjobs.target_registry r "
            "WHERE j.id = %s AND r.target = j.target")
    if judged:
        with pytest.raises(psycopg.Error) as raised:
            scalar(conn, twin, (job_id,))
        assert raised.value.sqlstate == "22023"
        assert 'document field "status"' in str(raised.value)
    else:
        assert scalar(conn, twin, (job_id,))


NUL_PATHS = ["/?scope=%00", "/?kind=%00", "/?target=public.%00", "/?status=%00",
             "/?scope=1%00&before=5", "/api/jobs?scope=%00", "/api/jobs?kind=a%00b",
             "/api/jobs?target=public.a%00"]


def test_a_nul_in_a_value_is_the_callers_mistake_on_every_entry_point(
        conn: Conn, dsn: str) -> None:
    """PostgreSQL's text cannot hold a NUL, and psycopg refuses to send one
    (DataError, no SQLSTATE): that was read as the database unreachable
    (503 on the dashboard, no hint). It is 22021 (as PostgreSQL names a
    character text cannot hold) with a hint, through the one translation
    of psycopg's errors (pgjobs.errors.from_psycopg) that every command,
    page and API route shares."""
    from pgjobs import db
    from pgjobs.errors import InvalidInput

    with pytest.raises(InvalidInput) as raised, db.translated():
        conn.execute("SELECT pgjobs.canonical_scope('pgjobs.jobs', %s)", ("1\x00",))
    assert raised.value.sqlstate == "22021" and "NUL" in (raised.value.hint or ""), raised.value
    conn.rollback()
    _table(conn, "nul_rows")
    with serving(dsn) as base:
        for path in NUL_PATHS:
            status, headers, body = request(base, "GET", path)
            _assert_inert(status, headers, body, path)
            assert status == 400, (path, status, body[:300])
            if path.startswith("/api/"):
                said = json.loads(body)
                assert said["sqlstate"] == "22021" and "NUL" in said["hint"], said
            else:
                assert 'id="hint"' in body.decode() and "NUL" in body.decode(), path
