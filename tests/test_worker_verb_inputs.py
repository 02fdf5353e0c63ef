"""A worker's own calls, given arguments that name no attempt (review h5).

- Every fenced verb (heartbeat, complete, fail, release, their item and
  export-part forms, an import's batch calls) answered a NULL id, or a NULL
  or empty worker name, with false, "you lost the lease": a worker with an
  unset variable walked away from the job it held, and a client's bug looked
  like another worker's takeover. Now 22023 with a hint, the one check
  pgjobs._check_holder, asked only once the fence found nothing; a real lost
  lease (an unknown id, another worker's name) still answers false.
- A claim's kinds holding NULL, '' or a name no submit accepts ('Export')
  came back empty for good: 22023 (pgjobs._check_kinds).
- The claims' limit hint said 1 to 100 where the limit is 1 to 1000.
- Messages that name a kind read "an export job", never "a export job"
  (pgjobs._a_job, and the command line's a_job).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_rows_target, scalar, seed

Conn = psycopg.Connection[Any]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def held(conn: Conn) -> dict[str, Any]:
    """A custom job and an item, each claimed by worker 'w1' (whose identity,
    the worker column each claim returns, is 'w1#token')."""
    make_rows_target(conn)
    scalar(conn, "SELECT pgjobs.submit('thumbnail', 'user_table_rows', '1')")
    job, worker = conn.execute(
        "SELECT id, worker FROM pgjobs.claim(ARRAY['thumbnail'], 'w1')").fetchone()
    parent = scalar(conn, "SELECT pgjobs.submit_items('resize', 'user_table_rows', '1', "
                          "'[{\"n\": 1}]')")
    item, item_worker = conn.execute(
        "SELECT id, worker FROM pgjobs.claim_items(ARRAY['resize'], 'w1')").fetchone()
    return {"job": job, "item": item, "parent": parent,
            "worker": worker, "item_worker": item_worker}


# (call with {id} and {worker} placeholders, noun of the id)
FENCED = {
    "heartbeat": ("SELECT pgjobs.heartbeat({id}, {worker})", "job"),
    "heartbeat progress": ("SELECT pgjobs.heartbeat({id}, {worker}, 5, '{{}}')", "job"),
    "complete": ("SELECT pgjobs.complete({id}, {worker})", "job"),
    "fail": ("SELECT pgjobs.fail({id}, {worker}, 'boom')", "job"),
    "fail final": ("SELECT pgjobs.fail({id}, {worker}, 'boom', false)", "job"),
    "release": ("SELECT pgjobs.release({id}, {worker})", "job"),
    "heartbeat_item": ("SELECT pgjobs.heartbeat_item({item}, {worker})", "item"),
    "complete_item": ("SELECT pgjobs.complete_item({item}, {worker})", "item"),
    "fail_item": ("SELECT pgjobs.fail_item({item}, {worker}, 'boom')", "item"),
    "export_part_heartbeat": ("SELECT pgjobs.export_part_heartbeat({id}, 0, {worker})", "job"),
    "export_part_finish": ("SELECT pgjobs.export_part_finish({id}, 0, {worker}, 'succeeded', "
                           "'{{}}')", "job"),
    "export_parts_redo": ("SELECT pgjobs.export_parts_redo({id}, {worker}, '{{0}}', 'x')", "job"),
    "export_parts_split": ("SELECT pgjobs.export_parts_split({id}, {worker})", "job"),
    "import_prepare": ("SELECT pgjobs.import_prepare({id}, {worker}, '{{a}}')", "job"),
    "import_batch": ("SELECT pgjobs.import_batch({id}, {worker}, '{{a}}', '{{1}}', 1, 1, "
                     "'{{}}')", "job"),
    "import_rejects_written": ("SELECT pgjobs.import_rejects_written({id}, {worker}, "
                               "'file:///x')", "job"),
    "import_rejects_placed": ("SELECT pgjobs.import_rejects_placed({id}, {worker}, "
                              "'file:///x')", "job"),
    "import_rejects_taken": ("SELECT pgjobs.import_rejects_taken({id}, {worker}, "
                             "'file:///x')", "job"),
    "import_rejects_creating": ("SELECT pgjobs.import_rejects_creating({id}, {worker}, "
                                "'file:///x', repeat('0', 64))", "job"),
    "import_rejects_created": ("SELECT pgjobs.import_rejects_created({id}, {worker}, "
                               "'file:///x')", "job"),
}


def _state(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, status, worker, attempts, done, error FROM pgjobs.jobs "
        "UNION ALL SELECT id, status, worker, attempts, NULL, error FROM pgjobs.job_items "
        "ORDER BY 1, 2").fetchall()


def _holder(held: dict[str, Any], noun: str) -> str:
    return "'{}'".format(held["worker"] if noun == "job" else held["item_worker"])


@pytest.mark.parametrize("name", sorted(FENCED))
@pytest.mark.parametrize("bad", ["null id", "null worker", "empty worker"])
def test_a_fenced_verb_refuses_arguments_that_name_no_attempt(
        conn: Conn, held: dict[str, Any], name: str, bad: str) -> None:
    call, noun = FENCED[name]
    ids: dict[str, Any] = {"id": held["job"], "item": held["item"]}
    worker = _holder(held, noun)
    if bad == "null id":
        ids = {"id": "NULL", "item": "NULL"}
    else:
        worker = "NULL" if bad == "null worker" else "''"
    before = _state(conn)
    with pytest.raises(errors.InvalidParameterValue) as refused:
        conn.execute(call.format(worker=worker, **ids)).fetchall()
    expected = f"{noun} id must not be null" if bad == "null id" else "worker name must not"
    assert expected in (refused.value.diag.message_primary or "")
    assert refused.value.diag.message_hint
    assert _state(conn) == before


@pytest.mark.parametrize("name", ["heartbeat", "complete", "fail", "release",
                                  "heartbeat_item", "complete_item", "fail_item",
                                  "import_rejects_written", "import_rejects_placed",
                                  "import_rejects_taken",
                                  "export_part_heartbeat"])
@pytest.mark.parametrize("who", ["unknown id", "other worker", "claim's p_worker"])
def test_a_lost_lease_is_still_false_not_an_error(
        conn: Conn, held: dict[str, Any], name: str, who: str) -> None:
    call, noun = FENCED[name]
    ids: dict[str, Any] = {"id": held["job"], "item": held["item"]}
    worker = _holder(held, noun)
    if who == "unknown id":
        ids = {"id": 987654, "item": 987654}
    elif who == "other worker":
        worker = "'w2#x'"
    else:
        worker = "'w1'"  # the name given to the claim, not the identity it returned
    before = _state(conn)
    assert conn.execute(call.format(worker=worker, **ids)).fetchone() == (False,)
    assert _state(conn) == before


@pytest.mark.parametrize(("ids", "workers", "message"), [
    ("ARRAY[NULL]::bigint[]", "ARRAY['{worker}']", "must not hold null"),
    ("ARRAY[{job}, NULL]::bigint[]", "ARRAY['{worker}', '{worker}']", "must not hold null"),
    ("ARRAY[{job}]", "ARRAY[NULL]::text[]", "worker name must be non-empty"),
    ("ARRAY[{job}]", "ARRAY['']", "worker name must be non-empty"),
])
@pytest.mark.parametrize("function", ["complete_many", "complete_items"])
def test_a_batched_completion_refuses_null_ids_and_names(
        conn: Conn, held: dict[str, Any], function: str, ids: str, workers: str,
        message: str) -> None:
    many = function == "complete_many"
    job, worker = ((held["job"], held["worker"]) if many
                   else (held["item"], held["item_worker"]))
    before = _state(conn)
    with pytest.raises(errors.InvalidParameterValue, match=message) as refused:
        conn.execute(f"SELECT * FROM pgjobs.{function}({ids.format(job=job)}, "
                     f"{workers.format(worker=worker)})")
    assert refused.value.diag.message_hint
    assert _state(conn) == before


def test_the_fenced_verbs_still_work_for_the_holder(conn: Conn, held: dict[str, Any]) -> None:
    job, worker, item, item_worker = (held[k] for k in ("job", "worker", "item", "item_worker"))
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 3)", (job, worker)) is True
    assert scalar(conn, "SELECT pgjobs.heartbeat_item(%s, %s)", (item, item_worker)) is True
    assert scalar(conn, "SELECT pgjobs.complete_item(%s, %s)", (item, item_worker)) is True
    assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job, worker)) is True
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                  (held["job"],)) == "succeeded"
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s",
                  (held["parent"],)) == "succeeded"


@pytest.mark.parametrize("kinds", ["ARRAY[NULL]::text[]", "ARRAY['thumbnail', NULL]",
                                   "ARRAY['']", "ARRAY['Export']", "ARRAY['thumb nail']",
                                   "ARRAY['export', 'x-y']"])
@pytest.mark.parametrize("claim", ["claim", "claim_items"])
def test_a_claim_refuses_kinds_no_job_can_have(conn: Conn, claim: str, kinds: str) -> None:
    make_rows_target(conn)
    conn.execute("SELECT pgjobs.submit('thumbnail', 'user_table_rows', '1')")
    with pytest.raises(errors.InvalidParameterValue, match="which is no job kind") as refused:
        conn.execute(f"SELECT * FROM pgjobs.{claim}({kinds}, 'w1')")
    assert "lower-case" in (refused.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'") == 0


@pytest.mark.parametrize("call", [
    "SELECT * FROM pgjobs.claim(ARRAY['x'], 'w', '30 seconds', {limit})",
    "SELECT * FROM pgjobs.claim_items(ARRAY['x'], 'w', '30 seconds', {limit})",
    "SELECT * FROM pgjobs.claim_storage_deletions({limit})",
])
def test_the_claim_limit_hint_gives_the_limit_the_check_applies(conn: Conn, call: str) -> None:
    with pytest.raises(errors.InvalidParameterValue) as refused:
        conn.execute(call.format(limit=1001))
    assert "1 to 1000" in (refused.value.diag.message_primary or "")
    assert "1 to 1000" in (refused.value.diag.message_hint or "")
    assert conn.execute(call.format(limit=1000)).fetchall() == []


# --- "an export job" -------------------------------------------------------------


@pytest.mark.parametrize(("call", "words"), [
    ("SELECT pgjobs.submit('export', 'user_table_rows', '1')", "submit an export job"),
    ("SELECT pgjobs.submit('import', 'user_table_rows', '1')", "submit an import job"),
    ("SELECT pgjobs.submit('delete', 'user_table_rows', '1')", "submit a delete job"),
    ("SELECT pgjobs.submit_items('export', 'user_table_rows', '1', '[1]')",
     "an export job cannot"),
    ("SELECT pgjobs.submit_items('import', 'user_table_rows', '1', '[1]')",
     "an import job cannot"),
    ("SELECT pgjobs.submit_export('user_table_rows', '1', '{}', '{\"pagesize\": 1}')",
     "for an export job"),
    ("SELECT pgjobs.submit('archive', 'user_table_rows', '1', '{}', '{\"pagesize\": 1}')",
     "for an archive job"),
    ("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}', '{\"pagesize\": 1}')",
     "for a delete job"),
])
def test_messages_put_the_right_article_before_a_kind(conn: Conn, call: str,
                                                      words: str) -> None:
    make_rows_target(conn)
    with pytest.raises(errors.InvalidParameterValue) as refused:
        conn.execute(call)
    assert words in (refused.value.diag.message_primary or "")


def test_a_job_of_the_wrong_kind_is_named_with_its_article(conn: Conn) -> None:
    seed(conn, make_rows_target(conn), 30)
    export = scalar(conn, "SELECT pgjobs.submit_export('user_table_rows', '1')")
    with pytest.raises(errors.InvalidParameterValue, match=f"job {export} is an export job"):
        conn.execute(f"SELECT * FROM pgjobs.claim_import({export}, 'w1')")
    with pytest.raises(errors.InvalidParameterValue, match=f"job {export} is an export job"):
        conn.execute(f"CALL pgjobs.run_job({export})")


def test_no_message_hard_codes_an_article_before_a_kind() -> None:
    """The class: a message that words "a <kind> job" itself gets "a export"
    wrong for two of the four built-in kinds; pgjobs._a_job (SQL) and a_job
    (pgjobs.units, for the dashboard and the command line) choose the
    article. Python's f-strings are read from the syntax tree, so a kind
    read as ``{job['kind']}`` (quotes inside the braces, which a pattern
    over the line did not pass) is seen as any other placeholder."""
    sql = re.compile(r"\ba (?:%s?|\{[^}]*\}) job")
    problems = []
    for path in sorted((ROOT / "sql" / "functions").glob("*.sql")):
        for literal in re.findall(r"'((?:[^']|'')*)'", path.read_text()):
            if sql.search(literal):
                problems.append(f"{path.name}: {literal[:80]}")
    for folder in ("cli", "poller", "pgjobs", "ui"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            problems += [f"{path.name}:{line}: {text[:80]}"
                         for line, text in _hard_coded_articles(path.read_text())]
    assert not problems, "\n".join(problems)


def _hard_coded_articles(source: str) -> list[tuple[int, str]]:
    """The strings of ``source`` that put "a"/"A" before a placeholder and
    "job": f-strings (each placeholder as ``{its expression}``), ``%s`` and
    ``{}`` templates."""
    wording = re.compile(r"\b[aA] (?:%s|\{[^}]*\}) job")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = "".join(part.value if isinstance(part, ast.Constant)
                           else "{" + ast.unparse(part.value) + "}"
                           for part in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if wording.search(text):
            found.append((node.lineno, text))
    return found


@pytest.mark.parametrize("code", [
    "f\"job {job['id']} is a {job['kind']} job, not an export\"",
    "f'job {n} is a {kind} job'",
    "f'A {row[\"kind\"]} job is running'",
    "'job %s is a %s job' % (n, kind)",
    "'is a {} job'.format(kind)",
])
def test_the_article_scan_catches_each_spelling(code: str) -> None:
    assert _hard_coded_articles(code)


@pytest.mark.parametrize("code", [
    "f'job {n} is {a_job(kind)}, not an export'",
    "f'a {n}-row job'",
    "'a fan-out job'",
])
def test_the_article_scan_leaves_what_chooses_its_article(code: str) -> None:
    assert not _hard_coded_articles(code)
