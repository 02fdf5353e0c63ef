"""A page's 57014 is told a statement_timeout or a user's cancel by time, never by its message.

SQLSTATE 57014 (query_canceled) is both PostgreSQL's statement_timeout and a
cancel asked for by a user (pg_cancel_backend, a client's cancel request,
Ctrl-C). The page told them apart by the English message ('%statement
timeout%'), which follows lc_messages: on a server with translated
messages a timeout counted as a user's cancel (the CALL ended with 57014
once the attempt was recorded) and the hint naming the setting was lost.
pgjobs._statement_timed_out judges by the statement's elapsed time against
the statement_timeout whose timer runs.

Each behaviour is proved three ways: in English; with the message altered
(a trigger rewords the real timeout, or words a user's cancel as a timeout:
no translation needed); and under German messages when the server has the
locale and PostgreSQL's translations (skipped otherwise). A policy test
keeps SQL and Python from deciding by message text again.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import errors
from pgjobs.poller import storage
from tests.support import (
    allowed_folder,
    job,
    make_people,
    make_rows_target,
    scalar,
    seed,
    wait_for,
)
from tests.support.roles import acting_as
from tests.test_import import BAD_CSV, do_import

Conn = psycopg.Connection[Any]
ROOT = Path(__file__).resolve().parents[1]
GATE = 5714
RUNNERS = ["CALL pgjobs.run_job(%s)", "CALL pgjobs.run('1 minute')"]


@pytest.fixture(params=["C", "de_DE.UTF-8"])
def messages(request: pytest.FixtureRequest, conn: Conn) -> Iterator[str]:
    """Every new session of the test's database speaks this lc_messages
    (German only where the server has the locale and PostgreSQL's
    translations: skipped otherwise)."""
    lang = str(request.param)
    dbname = conn.info.dbname
    if lang != "C":
        try:
            conn.execute(f"ALTER DATABASE {dbname} SET lc_messages = '{lang}'")
        except psycopg.errors.InvalidParameterValue:
            pytest.skip(f"the server has no locale {lang}")
        probe = psycopg.connect(conn.info.dsn, autocommit=True)
        try:
            probe.execute("SELECT 1/0")
        except psycopg.errors.DivisionByZero as exc:
            translated = exc.diag.message_primary != "division by zero"
        finally:
            probe.close()
        if not translated:
            conn.execute(f"ALTER DATABASE {dbname} RESET lc_messages")
            pytest.skip(f"PostgreSQL's messages are not translated for {lang} here")
    yield lang
    conn.execute(f"ALTER DATABASE {dbname} RESET lc_messages")


def slow_job(conn: Conn, kind: str, hook: str) -> int:
    """A delete or backfill of scope 1 (1000 rows) in pages of 1000 keys,
    whose trigger runs the PL/pgSQL `hook` for every row it changes."""
    target = make_rows_target(conn)
    seed(conn, target, 3000)
    event, result = ("DELETE", "OLD") if kind == "delete" else ("UPDATE", "NEW")
    conn.execute(f"CREATE FUNCTION public.hook() RETURNS trigger LANGUAGE plpgsql AS $$"
                 f" BEGIN {hook} RETURN {result}; END $$")
    conn.execute(f"CREATE TRIGGER hook BEFORE {event} ON user_table_rows"
                 " FOR EACH ROW EXECUTE FUNCTION public.hook()")
    options = '{"page_size": 1000}'
    if kind == "delete":
        return int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', "
                                "'{}', %s::jsonb)", (options,)))
    return int(scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', "
                            "'{\"label\": \"changed\"}', %s::jsonb)", (options,)))


SLOW = "PERFORM pg_sleep(0.005);"
"""5 ms a row: a page of 1000 keys (5 s) outlasts a statement_timeout of 3 s,
and the CALL's own work before the page (the claim, the full trust check, the
count: most of a second under load, as REWORDED found) stays well inside it.
At 1 s the timer could fire before any page ran, outside the page's handler,
and the CALL ended with 57014 instead of returning."""

REWORDED = ("BEGIN PERFORM pg_sleep(0.2); EXCEPTION WHEN query_canceled THEN "
            "RAISE EXCEPTION 'Anweisung abgebrochen (reworded)' USING ERRCODE = '57014'; END;")
"""The real timeout, caught and raised again with another message (200 ms a
row: a page of 1000 keys outlasts a statement_timeout of 4 s). The timer must
fire inside the sleep, which rewords it; the executor's own work between rows
is outside, so each row sleeps long for that share to stay tiny even on a
loaded machine (at 10 ms a row a clean-clone CI run under load saw the plain
message once)."""

WORDED_AS_TIMEOUT = ("RAISE EXCEPTION 'canceling statement due to statement timeout' "
                     "USING ERRCODE = '57014';")
"""A cancel that is no timeout (at once, long before any timer), in the
words of one."""


def call(make_conn: Callable[..., Conn], runner: str, job_id: int,
         timeout: str) -> BaseException | None:
    """The runner CALL in a new session under statement_timeout; what it raised."""
    session = make_conn()
    session.execute(f"SET statement_timeout = '{timeout}'")
    try:
        session.execute(runner % (job_id,) if "%s" in runner else runner)
    except psycopg.Error as exc:
        return exc
    return None


def assert_timed_out(conn: Conn, job_id: int, raised: BaseException | None,
                     timeout: str = "1s") -> str:
    """The timeout failed the attempt only (retried), the CALL returned, and
    the error names the setting whose timer fired and what to set."""
    assert raised is None, raised
    row = job(conn, job_id)
    assert (row["status"], row["attempts"]) == ("queued", 1), row
    error = str(row["error"])
    assert "(SQLSTATE 57014)" in error, error
    assert f"the statement_timeout ({timeout}) of the session running the page" in error, error
    assert "ALTER ROLE ... SET statement_timeout = 0" in error, error
    return error


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("runner", RUNNERS)
def test_a_statement_timeout_fails_the_attempt_and_the_call_returns(
        conn: Conn, make_conn: Callable[..., Conn], messages: str, runner: str,
        kind: str) -> None:
    job_id = slow_job(conn, kind, SLOW)
    error = assert_timed_out(conn, job_id, call(make_conn, runner, job_id, "3s"), "3s")
    if messages != "C":
        assert "canceling statement" not in error, error  # the translated message


@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("runner", RUNNERS)
def test_a_statement_timeout_in_other_words_is_still_one(
        conn: Conn, make_conn: Callable[..., Conn], runner: str, kind: str) -> None:
    # 4 s, not 1: the timer must fire inside the hook, which rewords it, not
    # in the CALL's own work before the first row (which under load can take
    # most of a second; a clean-clone CI run saw the plain message once).
    job_id = slow_job(conn, kind, REWORDED)
    error = assert_timed_out(conn, job_id, call(make_conn, runner, job_id, "4s"), "4s")
    assert error.startswith("Anweisung abgebrochen (reworded): "), error


def assert_canceled(conn: Conn, job_id: int, raised: BaseException | None) -> None:
    """The cancel ended the CALL with 57014, once the attempt was recorded."""
    assert isinstance(raised, psycopg.errors.QueryCanceled), raised
    row = job(conn, job_id)
    assert (row["status"], row["attempts"]) == ("queued", 1), row
    assert "(SQLSTATE 57014)" in str(row["error"]), row
    assert "statement_timeout" not in str(row["error"]), row


@pytest.mark.parametrize("timeout", ["0", "1h"])
@pytest.mark.parametrize("kind", ["delete", "backfill"])
@pytest.mark.parametrize("runner", RUNNERS)
def test_a_cancel_worded_as_a_timeout_is_a_users_cancel(
        conn: Conn, make_conn: Callable[..., Conn], runner: str, kind: str,
        timeout: str) -> None:
    """A 57014 long before any statement_timeout could fire (none set, or an
    hour) is a user's, whatever its words: the CALL ends with it."""
    job_id = slow_job(conn, kind, WORDED_AS_TIMEOUT)
    assert_canceled(conn, job_id, call(make_conn, runner, job_id, timeout))


def start_runner(make_conn: Callable[..., Conn], runner: str,
                 job_id: int) -> tuple[int, threading.Thread, dict[str, Any]]:
    """The runner CALL on a thread, in a new session under a statement_timeout
    far off: its backend's pid, the thread, and what it did ("returned", or
    the "error" it raised) once it ends."""
    session = make_conn()
    session.execute("SET statement_timeout = '1h'")
    pid = int(scalar(session, "SELECT pg_backend_pid()"))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            session.execute(runner % (job_id,) if "%s" in runner else runner)
            outcome["returned"] = True
        except BaseException as exc:  # reported by the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return pid, thread, outcome


def waiting_on_gate(conn: Conn, pid: int) -> bool:
    return bool(scalar(conn, "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND "
                             "locktype = 'advisory' AND objid = %s AND NOT granted)",
                       (pid, GATE)))


@pytest.mark.parametrize("runner", RUNNERS)
def test_an_operators_cancel_ends_the_call(conn: Conn, make_conn: Callable[..., Conn],
                                           messages: str, runner: str) -> None:
    """pg_cancel_backend of a runner whose page waits (here on an advisory
    lock, in a trigger), under a statement_timeout far off: the CALL ends
    with 57014 once the attempt is counted, in any language."""
    job_id = slow_job(conn, "delete", f"PERFORM pg_advisory_xact_lock({GATE});")
    gate = make_conn(autocommit=False)
    gate.execute("SELECT pg_advisory_xact_lock(%s)", (GATE,))
    pid, thread, outcome = start_runner(make_conn, runner, job_id)
    try:
        wait_for(lambda: waiting_on_gate(conn, pid) or outcome, what="the page to wait")
        assert not outcome, outcome
        assert scalar(conn, "SELECT pg_cancel_backend(%s)", (pid,)) is True
        wait_for(lambda: outcome or waiting_on_gate(conn, pid), what="the CALL to end")
    finally:
        gate.rollback()
        thread.join()
    assert_canceled(conn, job_id, outcome.get("error"))


# --- policy: no decision reads a message -------------------------------------------


def _sql_bodies() -> dict[str, str]:
    return {p.name: re.sub(r"--[^\n]*", "", p.read_text())
            for p in sorted((ROOT / "sql" / "functions").glob("*.sql"))}


def test_no_sql_function_decides_by_an_errors_message() -> None:
    """A variable that holds an error's message (GET STACKED DIAGNOSTICS ...
    MESSAGE_TEXT, SQLERRM, a p_error parameter) is shown, never matched: its
    text follows lc_messages. (SQLSTATEs, RETURNED_SQLSTATE, decide.)"""
    found = []
    for name, code in _sql_bodies().items():
        holders = set(re.findall(r"(\w+)\s*=\s*(?:MESSAGE_TEXT|PG_EXCEPTION_DETAIL"
                                 r"|PG_EXCEPTION_HINT)\b", code, re.I))
        holders |= set(re.findall(r"(\w+)\s*:=\s*SQLERRM\b", code, re.I))
        holders |= {"SQLERRM", "p_error"} & set(re.findall(r"\w+", code))
        for holder in holders:
            matched = re.search(
                rf"\b{holder}\b\s+(NOT\s+)?(I?LIKE|SIMILAR|~~?\*?|!~)"
                rf"|(position|strpos|starts_with|regexp_\w+)\s*\([^;]*?\b{holder}\b"
                rf"|\b{holder}\b\s*(=|<>|!=)\s*'", code, re.I)
            if matched:
                found.append(f"{name}: {matched.group(0)}")
    assert found == [], found
    assert not any("statement timeout" in code for code in _sql_bodies().values())


def _cancel_handlers(code: str) -> list[str]:
    """The bodies of the exception handlers that catch query_canceled (by
    name or SQLSTATE 57014): from the WHEN to the next WHEN or END of its
    block (a line indented no deeper than the WHEN)."""
    lines = code.splitlines()
    bodies = []
    for i, line in enumerate(lines):
        if not re.search(r"\bWHEN\b[^\n]*(\bquery_canceled\b|SQLSTATE\s+'57014')", line, re.I):
            continue
        depth = len(line) - len(line.lstrip())
        body = [line]
        for later in lines[i + 1:]:
            stripped = later.lstrip()
            if stripped and len(later) - len(stripped) <= depth and re.match(
                    r"(WHEN|END)\b", stripped, re.I):
                break
            body.append(later)
        bodies.append("\n".join(body))
    return bodies


def test_every_handler_that_catches_a_cancel_lets_a_users_cancel_through() -> None:
    """A handler that catches query_canceled (57014, which PL/pgSQL's OTHERS
    does not) must tell a user's cancel (pg_cancel_backend, a client's cancel
    request, Ctrl-C) from the statement_timeout, by time
    (pgjobs._statement_timed_out), or raise it again. The export claims'
    handlers did neither: an operator's cancel of a claim was counted as a
    transient error, the job requeued with an error, and the claim went on
    as if nothing had been asked (tests/test_typo_guard_exports.py)."""
    found = []
    seen = 0
    for name, code in _sql_bodies().items():
        for body in _cancel_handlers(code):
            seen += 1
            if "_statement_timed_out" not in body and not re.search(r"\bRAISE\s*;", body):
                found.append(f"{name}: {body.splitlines()[0].strip()}")
    assert seen >= 5  # the pages' two, the typo guard's walk, the export claims' two
    assert found == [], found


# Fragments of PostgreSQL's own messages (lc_messages translates them) that
# code once matched to decide: a timeout, a privilege, a missing pgjobs, a
# COPY's line. Said by pgjobs itself (an f-string's text) they are no match.
SERVER_WORDS = ["statement timeout", "canceling statement", "user request",
                "permission denied for", 'schema "pgjobs"', "function pgjobs.",
                'relation "pgjobs.', r"\bline (\d"]


def _matched_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are neither docstrings nor parts
    of an f-string (text pgjobs writes), with their lines."""
    tree = ast.parse(path.read_text())
    skip = {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip |= {id(v) for v in node.values}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skip]


def test_no_python_module_decides_by_a_servers_message() -> None:
    """The poller, the CLI and the package decide by SQLSTATE, or by the names
    a message carries (a schema, a routine), never by PostgreSQL's words:
    no constant holds them to compare a message with."""
    found = []
    for path in sorted([*ROOT.glob("poller/*.py"), *ROOT.glob("cli/*.py"),
                        *ROOT.glob("pgjobs/*.py")]):
        for line, text in _matched_strings(path):
            found += [f"{path.relative_to(ROOT)}:{line}: {words!r} in {text[:60]!r}"
                      for words in SERVER_WORDS if words.lower() in text.lower()]
    assert found == [], found


# --- the same class in Python: COPY's line, a privilege, a missing pgjobs ----------


def test_an_imports_bad_records_are_rejected_in_any_language(
        conn: Conn, dsn: str, tmp_path: Path, messages: str) -> None:
    """The worker finds a refused record's line in COPY's CONTEXT by its
    number, not by the word `line` (`Zeile` in German): read in English, a
    translated server's first bad record failed the whole import."""
    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    row = do_import(conn, dsn, folder, "bad.csv", BAD_CSV, options={"max_rejects": 5})
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["rows"] == 1 and row["result"]["rejected"] == 5, row["result"]
    rejects = [json.loads(x) for x in storage.read(row["result"]["rejects_uri"]).splitlines()]
    assert [r["line"] for r in rejects] == [3, 4, 5, 6, 7]
    # The staging column ("f3", or »f3« in German) named as the source names it.
    reason = rejects[0]["reason"]
    assert "born" in reason and "(field 3)" in reason and "f3" not in reason, reason


def test_a_refusal_gets_its_hint_in_any_language(conn: Conn, messages: str) -> None:
    """The CLI's hints for PostgreSQL's own refusals (a role in no pgjobs
    role, an administrator's routine called by a client, pgjobs missing or
    older) are chosen by the names the message carries."""
    role = "h1_msg_client"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role}")
    session = psycopg.connect(conn.info.dsn, autocommit=True)
    try:
        def hint_of(sql: str, as_role: str | None = None) -> str:
            with acting_as(session, as_role), pytest.raises(psycopg.Error) as caught:
                session.execute(sql)
            return errors.from_psycopg(caught.value).hint or ""
        assert "GRANT pgjobs_client TO" in hint_of("SELECT pgjobs.stats()", role)
        conn.execute(f"GRANT pgjobs_client TO {role}")
        assert "prune is for administrators (pgjobs_admin)" in hint_of(
            "SELECT pgjobs.prune()", role)
        assert "pgjobs migrate" in hint_of("SELECT pgjobs.no_such_function()")
        assert "pgjobs migrate" in hint_of("SELECT * FROM pgjobs.no_such_table")
        assert "pgjobs migrate" not in hint_of("SELECT * FROM no_such_table_here")
    finally:
        session.close()
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


# --- a cancel between pages ----------------------------------------------------------

THROTTLED = [{"page_delay": "1 hour"}, {"max_rows_per_second": 10}]


def sleeping(conn: Conn, pid: int) -> bool:
    return bool(scalar(conn, "SELECT wait_event = 'PgSleep' FROM pg_stat_activity "
                             "WHERE pid = %s", (pid,)))


@pytest.mark.parametrize("throttle", THROTTLED, ids=lambda t: next(iter(t)))
@pytest.mark.parametrize("runner", RUNNERS)
def test_an_operators_cancel_between_pages_hands_the_job_back(
        conn: Conn, make_conn: Callable[..., Conn], runner: str,
        throttle: dict[str, Any]) -> None:
    """pg_cancel_backend of a runner waiting between pages (its throttle's
    sleep): the job is handed back at once (queued, no lease, no attempt
    counted, its cursor kept) and the CALL ends with 57014 saying so. The
    cancel ended the CALL with the job left `running` under the runner's
    lease until it lapsed. The next run finishes the job exactly."""
    target = make_rows_target(conn)
    seed(conn, target, 3000)
    before = dict(conn.execute("SELECT table_id, count(*) FROM user_table_rows GROUP BY 1"
                               ).fetchall())
    # The rows the delete takes (those created after its submit stay).
    doomed = int(scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1 "
                              "AND created_at <= now()"))
    job_id = int(scalar(conn, "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}', "
                              "%s::jsonb)", (json.dumps({"page_size": 100, **throttle}),)))
    pid, thread, outcome = start_runner(make_conn, runner, job_id)
    try:
        wait_for(lambda: outcome or (job(conn, job_id)["done"] > 0 and sleeping(conn, pid)),
                 what="a page committed and the throttle's wait")
        assert not outcome, outcome
        assert scalar(conn, "SELECT pg_cancel_backend(%s)", (pid,)) is True
    finally:
        thread.join(60)
    raised = outcome.get("error")
    assert isinstance(raised, psycopg.errors.QueryCanceled), outcome
    assert f"between pages of job {job_id}" in str(raised), raised
    row = job(conn, job_id)
    assert (row["status"], row["attempts"], row["error"]) == ("queued", 0, None), row
    assert row["lease_expires_at"] is None, row
    assert scalar(conn, "SELECT run_at <= now() FROM pgjobs.jobs WHERE id = %s", (job_id,))
    done = int(row["done"])
    left = scalar(conn, "SELECT count(*) FROM user_table_rows WHERE table_id = 1")
    assert 0 < done < doomed and left == before[1] - done, (done, left)
    # The next run (the throttle lifted) goes on from the cursor and ends exactly.
    conn.execute("UPDATE pgjobs.jobs SET options = options - 'page_delay' "
                 "- 'max_rows_per_second' WHERE id = %s", (job_id,))
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    row = job(conn, job_id)
    assert (row["status"], row["done"]) == ("succeeded", doomed), row
    after = dict(conn.execute("SELECT table_id, count(*) FROM user_table_rows GROUP BY 1"
                              ).fetchall())
    assert after == {**before, 1: before[1] - doomed}, after


@pytest.mark.parametrize("session_timeout", ["0", "1h"])
def test_a_page_sets_no_statement_timeout_it_could_not_arm(
        conn: Conn, make_conn: Callable[..., Conn], session_timeout: str) -> None:
    """A page sees the statement_timeout the CALL began with: a SET inside the
    CALL arms no timer (PostgreSQL arms it once per top-level statement), so
    the page's own 30 s (10 min on a first call) never applied while
    docs/engine.md said it did."""
    conn.execute("CREATE TABLE public.seen (setting text)")
    job_id = slow_job(conn, "delete", "INSERT INTO public.seen "
                                      "VALUES (current_setting('statement_timeout'));")
    session = make_conn()
    session.execute(f"SET statement_timeout = '{session_timeout}'")
    session.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert job(conn, job_id)["status"] == "succeeded"
    shown = {r[0] for r in conn.execute("SELECT setting FROM public.seen").fetchall()}
    assert shown == {session.execute("SHOW statement_timeout").fetchone()[0]}, shown
