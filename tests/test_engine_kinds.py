"""The kinds the engine runs itself (delete, backfill) are written once (issue 11,
"one way to do each thing").

`kind IN ('delete', 'backfill')` was spelled in eleven routines (the gate's rule,
_may_start_attempt, _submitter_problem, _start_attempts, _unchecked_fields_problem,
_other_writer_due, _claim_id, _import_after, _run_next's claim, _builtin_kind,
_preview_as) and twice in pgjobs/queries.py. Now pgjobs._engine_kinds() holds the
list and every other place asks `kind = ANY (pgjobs._engine_kinds())`.

1. Static: no routine file of sql/functions other than _engine_kinds.sql, and no
   Python module of the package, writes a list (an IN list, an ARRAY, an array
   literal, a Python tuple/list/set, an OR chain) holding both kinds; the scanner
   is shown to catch every spelling the old code used and a few more.
2. The planner folds the function to a constant (an IMMUTABLE function without
   arguments), so a plan that asks it carries `'{delete,backfill}'::text[]`, never
   a call: no cost on the claim's path, and an index condition on kind still works.
3. The sites still mean what the list meant: the engine claims and runs exactly
   these kinds (run_job refuses the others), a client's status reads the list.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import psycopg
import pytest

from tests.support import scalar

Conn = psycopg.Connection[Any]
ROOT = pathlib.Path(__file__).resolve().parent.parent
THE_ONE_FILE = "_engine_kinds.sql"
ENGINE_KINDS = {"delete", "backfill"}

_ITEM = r"""(?:'[^']*'|"[^"]*")(?:\s*::\s*[\w.\[\]]+)?"""
_LIST = re.compile(rf"(?:\(|\[|\{{)\s*{_ITEM}(?:\s*,\s*{_ITEM})+\s*,?\s*(?:\)|\]|\}})")
_ARRAY_LITERAL = re.compile(r"'\{([^'}]*)\}'")
_EQUALS = re.compile(r"""(?:=|==)\s*(?:'"?|")(\w+)"?'?""")


def _sql_code(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"--[^\n]*", " ", text)


def _python_code(text: str) -> str:
    return re.sub(r"(?m)#[^\n]*$", " ", text)


def copies_of_the_list(code: str) -> list[str]:
    """Every place in `code` (comments already removed) that writes a list holding
    both engine kinds: a literal list of (quoted) items, a '{...}' array literal, or
    a chain of `= 'kind'` tests joined by OR within one statement."""
    found: list[str] = []
    for m in _LIST.finditer(code):
        items = {re.sub(r"""::.*$|['"\s]""", "", i)
                 for i in re.findall(_ITEM, m.group(0))}
        if items >= ENGINE_KINDS:
            found.append(m.group(0))
    for m in _ARRAY_LITERAL.finditer(code):
        if {i.strip().strip('"') for i in m.group(1).split(",")} >= ENGINE_KINDS:
            found.append(m.group(0))
    for statement in re.split(r";|\bTHEN\b|\bELSE\b|\n\s*\n", code, flags=re.I):
        parts = [{m.group(1) for m in _EQUALS.finditer(p)} & ENGINE_KINDS
                 for p in re.split(r"\bOR\b", statement, flags=re.I)]
        if len(parts) > 1 and set().union(*parts) >= ENGINE_KINDS:
            found.append(statement.strip())
    return found


OLD_SPELLINGS = [
    "IF p_job.kind IN ('delete', 'backfill') AND p_job.started_at IS NULL THEN",
    "IF v_job.kind NOT IN ('delete', 'backfill') THEN",
    "FROM pgjobs.claim(ARRAY['delete', 'backfill'], p_worker, interval '30 seconds', 1) c;",
    """IF v_options -> 'kind' NOT IN ('"delete"'::jsonb, '"backfill"'::jsonb) THEN""",
    "OR p_kind IN ('delete', 'backfill');",
    "WHERE status = 'running' AND kind IN ('delete', 'backfill')",
    # ... and the spellings someone might reach for next
    "WHERE kind IN ('backfill','delete')",
    "WHERE kind IN ('delete'::text, 'backfill'::text, 'import'::text)",
    "WHERE kind = ANY ('{delete,backfill}'::text[])",
    "WHERE kind = ANY (ARRAY['backfill', 'delete']::text[])",
    "WHERE (kind = 'delete' OR kind = 'backfill') AND status = 'queued'",
    'ENGINE_KINDS = ("delete", "backfill")',
    'if job["kind"] in {"backfill", "delete"}:',
    'kinds = ["delete", "backfill", "import"]',
]
NOT_COPIES = [
    "WHERE kind = ANY (pgjobs._engine_kinds())",
    "WHEN p_kind = 'delete' THEN ARRAY['SELECT', 'DELETE'] "
    "WHEN p_kind = 'backfill' THEN ARRAY['SELECT', 'UPDATE']",
    "RAISE EXCEPTION 'option \"kind\" must be \"delete\" or \"backfill\", not %', x;",
    "IF p_job.kind = 'delete' THEN x := 1; ELSIF p_job.kind = 'backfill' THEN x := 2; END IF;",
    "AND p.proname IN ('submit_delete', 'submit_backfill')",
    'if kind == "backfill":',
]


@pytest.mark.parametrize("code", OLD_SPELLINGS)
def test_the_scanner_catches_every_spelling(code: str) -> None:
    assert copies_of_the_list(code), code


@pytest.mark.parametrize("code", NOT_COPIES)
def test_the_scanner_leaves_what_is_not_the_list(code: str) -> None:
    assert copies_of_the_list(code) == [], code


def _sql_files() -> list[pathlib.Path]:
    return sorted((ROOT / "sql" / "functions").glob("*.sql"))


def _python_files() -> list[pathlib.Path]:
    return sorted(p for d in ("pgjobs", "poller", "cli") for p in (ROOT / d).rglob("*.py"))


def test_no_routine_writes_the_list_again() -> None:
    files = _sql_files()
    assert any(f.name == THE_ONE_FILE for f in files)
    copies = {f.name: found for f in files if f.name != THE_ONE_FILE
              if (found := copies_of_the_list(_sql_code(f.read_text(encoding="utf-8"))))}
    assert copies == {}, "ask pgjobs._engine_kinds() instead of writing the kinds again"
    assert copies_of_the_list(_sql_code((ROOT / "sql" / "functions" / THE_ONE_FILE)
                                        .read_text(encoding="utf-8")))


def test_no_python_module_writes_the_list_again() -> None:
    files = _python_files()
    assert any(f.name == "queries.py" for f in files)
    copies = {str(f.relative_to(ROOT)): found for f in files
              if (found := copies_of_the_list(_python_code(f.read_text(encoding="utf-8"))))}
    assert copies == {}, "SQL decides which kinds the engine runs: ask pgjobs._engine_kinds()"


def test_the_list_is_the_engines(conn: Conn) -> None:
    assert scalar(conn, "SELECT pgjobs._engine_kinds()") == ["delete", "backfill"]
    assert scalar(conn, "SELECT provolatile FROM pg_proc "
                        "WHERE oid = 'pgjobs._engine_kinds()'::regprocedure") == "i"


@pytest.mark.parametrize("where", [
    "kind = ANY (pgjobs._engine_kinds())",
    "status = 'queued' AND kind = ANY (pgjobs._engine_kinds())",
    "NOT kind = ANY (pgjobs._engine_kinds())",
])
def test_the_planner_folds_the_list_to_a_constant(conn: Conn, where: str) -> None:
    """No call at run time: the plan holds the array the function returned."""
    plan = "\n".join(r[0] for r in conn.execute(
        f"EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM pgjobs.jobs WHERE {where}"))
    assert "_engine_kinds" not in plan
    assert "'{delete,backfill}'::text[]" in plan


def test_a_client_reads_the_list(conn: Conn) -> None:
    """`pgjobs status` (pgjobs.queries.GET_JOB) and pgjobs._gate_holder ask it as the
    client: pgjobs_client may execute it."""
    assert scalar(conn, "SELECT pg_catalog.has_function_privilege('pgjobs_client', "
                        "'pgjobs._engine_kinds()', 'EXECUTE')") is True
    assert scalar(conn, "SELECT pg_catalog.has_function_privilege('public', "
                        "'pgjobs._engine_kinds()', 'EXECUTE')") is False
