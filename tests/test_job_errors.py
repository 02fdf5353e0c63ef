"""The error a worker records for a job (or a part) names at most one SQLSTATE.

An error wrapping another used to quote the other's one line whole: after
MAX_UPLOAD_RESTARTS, ``cannot write x: the join's upload is gone (... [58030]
(hint: ...)) (3 times in one attempt) [58030] (hint: ...)``, two SQLSTATEs and
two hints in one retryable message. Now a wrapping error quotes the other's
words (pgjobs.errors.words) and every poller's ``_fail`` records
pgjobs.errors.job_error(exc): its words, then one SQLSTATE (none added when
the text names one already) and its hint. Checked three ways: a property over
nested errors, the recorded errors of real attempts, and the poller's source
(no exception's whole text interpolated into another error).
"""

from __future__ import annotations

import ast
import string
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgjobs.errors import PgjobsError, job_error, sqlstates, words
from pgjobs.poller import export as export_module
from pgjobs.poller import parallel
from pgjobs.poller.storage import StorageError, UploadLost
from tests.support import job, make_items, run_export, submit_export
from tests.support.exports import MANY_PARTS

Conn = psycopg.Connection[Any]

POLLER = Path(__file__).resolve().parent.parent / "poller"

TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .:,()'\"/-_", max_size=40)
HINTS = st.one_of(st.none(), TEXT, TEXT.map(lambda t: f"pgjobs.retry(5) then ({t})"))
STATES = st.sampled_from(["58030", "58P01", "42501", "22023", "55000", "53200", "40P01"])


@st.composite
def nested(draw: st.DrawFn) -> BaseException:
    """An error that quotes, whole (str), a chain of others: storage errors,
    database errors, plain exceptions, a database message naming a SQLSTATE."""
    exc: BaseException = draw(st.one_of(
        st.builds(lambda m, s, h: PgjobsError(m, sqlstate=s, hint=h), TEXT, STATES, HINTS),
        st.builds(lambda m, r, h: StorageError(m, retryable=r, hint=h), TEXT, st.booleans(),
                  HINTS),
        st.builds(lambda m, s: PgjobsError(f"{m} (SQLSTATE {s})", sqlstate="55000"), TEXT,
                  STATES),
        st.builds(lambda m: OSError(m), TEXT)))
    for _ in range(draw(st.integers(0, 4))):
        head = draw(TEXT)
        kind = draw(st.integers(0, 3))
        if kind == 0:
            exc = StorageError(f"{head}: {exc}", retryable=draw(st.booleans()))
        elif kind == 1:
            exc = UploadLost(f"{head} ({exc})")
        elif kind == 2:
            exc = StorageError(f"cannot write x: {exc} (3 times in one attempt)",
                               retryable=True)
        else:
            exc = PgjobsError(f"part 2: {exc}", sqlstate=draw(STATES), hint=draw(HINTS))
    return exc


@settings(max_examples=400, deadline=None)
@given(nested())
def test_a_recorded_error_names_at_most_one_sqlstate(exc: BaseException) -> None:
    line = job_error(exc)
    assert len(sqlstates(line)) <= 1, line
    assert "\n" not in line and "\r" not in line
    # Its own SQLSTATE is the one named, unless its words name one already.
    own = getattr(exc, "sqlstate", None)
    if own and "SQLSTATE " not in words(exc):
        assert sqlstates(line) == [own], line
    assert len(sqlstates(words(exc))) <= 1


def test_a_hint_with_parentheses_is_taken_out_whole() -> None:
    inner = StorageError("upload u1 is gone", retryable=True,
                         hint="abort it (or not: pgjobs.retry(5)) then")
    outer = StorageError(f"cannot write s3://b/k: {inner} (3 times in one attempt)",
                         retryable=True)
    assert words(outer) == "cannot write s3://b/k: upload u1 is gone (3 times in one attempt)"
    assert sqlstates(job_error(outer)) == ["58030"]


def test_a_database_error_is_recorded_with_its_sqlstate_and_hint(conn: Conn) -> None:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("DO $$ BEGIN RAISE EXCEPTION 'no (SQLSTATE 53200) here' "
                     "USING ERRCODE = '55000', HINT = 'wait'; END $$")
    assert job_error(caught.value) == "no (SQLSTATE 53200) here (hint: wait)"
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("DO $$ BEGIN RAISE EXCEPTION 'plain' USING ERRCODE = '22023'; END $$")
    assert job_error(caught.value) == "plain [22023]"


def lose_every_upload(monkeypatch: pytest.MonkeyPatch, cls: type[Any]) -> None:
    """Every stream meets an upload lost mid-stream, whose text quotes the
    storage error that said so (as the join's does)."""
    said = StorageError("NoSuchUpload: gone", retryable=False, sqlstate="58P01")

    def lost(self: Any) -> None:
        raise UploadLost(f"the upload is gone ({said})")

    monkeypatch.setattr(cls, "_stream", lost)


def test_the_restart_ceiling_records_one_sqlstate(conn: Conn, dsn: str, local_dir: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=30)
    job_id = submit_export(conn, "1")
    lose_every_upload(monkeypatch, export_module.Exporter)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "retrying", outcome
    error = job(conn, job_id)["error"]
    assert f"{export_module.MAX_UPLOAD_RESTARTS} times in one attempt" in error, error
    assert sqlstates(error) == ["58030"], error
    assert error.count("(hint:") == 1, error


def test_a_parts_restart_ceiling_records_one_sqlstate(conn: Conn, dsn: str, local_dir: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    make_items(conn, rows=60)
    job_id = submit_export(conn, "1", {}, {**MANY_PARTS, "parallel": 2, "max_attempts": 1})
    lose_every_upload(monkeypatch, parallel.PartExporter)
    outcome = run_export(dsn, job_id, local_dir)
    assert outcome.status == "failed", outcome
    for text in [job(conn, job_id)["error"], *(r[0] for r in conn.execute(
            "SELECT error FROM pgjobs.export_parts WHERE job_id = %s AND error IS NOT NULL",
            (job_id,)))]:
        assert "times in one attempt" in text and len(sqlstates(text)) == 1, text


WRAPPERS = ("Error", "Lost", "Changed", "Resume", "Mismatch", "Source", "Extra", "_corrupt")


def _quotes_whole(node: ast.AST, name: str) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.FormattedValue) and isinstance(sub.value, ast.Name) \
                and sub.value.id == name:
            return True
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
                and sub.func.id == "str" and sub.args and isinstance(sub.args[0], ast.Name)
                and sub.args[0].id == name):
            return True
    return False


def test_no_poller_error_quotes_another_whole() -> None:
    # Inside `except ... as exc:`, an error built from exc's text quotes
    # words(exc), never f"{exc}" or str(exc): its one line carries a SQLSTATE.
    found = []
    for path in sorted(POLLER.glob("*.py")):
        for handler in ast.walk(ast.parse(path.read_text())):
            if not isinstance(handler, ast.ExceptHandler) or not handler.name:
                continue
            for call in (n for s in handler.body for n in ast.walk(s) if isinstance(n, ast.Call)):
                func = call.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                args = [*call.args, *(k.value for k in call.keywords)]
                if called.endswith(WRAPPERS) and any(_quotes_whole(a, handler.name)
                                                     for a in args):
                    found.append(f"{path.name}:{call.lineno}")
    assert found == []


def test_every_poller_records_its_errors_through_job_error() -> None:
    # Each _fail that records a failed attempt (fail_by_sqlstate, a part's
    # finish) builds the message with job_error.
    failing = {}
    for path in sorted(POLLER.glob("*.py")):
        source = path.read_text()
        for fn in ast.walk(ast.parse(source)):
            if isinstance(fn, ast.FunctionDef) and fn.name == "_fail":
                failing[path.name] = ast.get_source_segment(source, fn) or ""
    recording = {name: body for name, body in failing.items() if "self." in body}
    assert set(recording) == {"export.py", "parallel.py", "importer.py"}
    for name, body in recording.items():
        assert "message = job_error(exc)" in body, name
