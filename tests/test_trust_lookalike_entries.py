"""Every name a caller gives that only looks like a column or a document field
is refused, at every entry point that takes one, naming what it means (the
class of tests/test_trust_lookalike_fields.py, held over all of them).

A caller names columns and document fields in: the filter of submit_delete,
submit_backfill and submit_export (and preview, which reports what it
cannot find), backfill's ``set``, an export's ``columns``, and an import's
fields (a CSV header, a JSON Lines record's keys). (``p_exclude`` and
``visible``'s ``p_after`` are key values, not names.) Each is tried with the
spellings a reader cannot tell from the name meant: another case, full-width
letters, a soft hyphen or a zero-width space inside, the case of a parent
segment of a path (``NEST.a`` where the rows say ``nest.a``), and the
document column's name as a prefix in front of one. Each must refuse with
22023 and a hint (an import: its job's error) naming the column or the
document field meant; the option {"allow_unknown_fields": true} takes the
name as written where the entry point has it.

Left over from stop 63 and failing before this round: an import's
document-field twins (``"Status"`` where the scope's rows say ``"status"``;
judged against the scope's rows from before the job, so the job's own
earlier batches never judge its later fields), a mis-cased parent segment
in ``set`` and in an import's fields, and the hint of a set key in a
parent's other case.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import (
    allowed_folder,
    build_target,
    drop_client,
    import_as,
    job,
    one_record,
    people_client,
    run_import,
    run_in_batches,
    scalar,
    submit_import,
)
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]

# written -> what it means: a column of people (id tenant created_at name age
# born active tags score data) or a document path of scope 1's rows
# ({"k": 1, "status": "keep", "nest": {"a": 1}}).
SPELLINGS: dict[str, str] = {
    "Name": "name",                                           # a column in another case
    "\uff4e\uff41\uff4d\uff45": "name",                       # full-width
    "na\u00adme": "name",                                     # soft hyphen inside
    "na\u200bme": "name",                                     # zero-width space inside
    "Status": "status",                                       # a field in another case
    "\uff53\uff54\uff41\uff54\uff55\uff53": "status",         # full-width
    "sta\u00adtus": "status",
    "sta\u200btus": "status",
    "NEST.a": "nest.a",                                       # a parent's case
    "\uff4e\uff45\uff53\uff54.a": "nest.a",                   # a full-width parent
    "ne\u200bst.a": "nest.a",
    "Nest.A": "nest.a",
    "data.NEST.a": "nest.a",                                  # and the column's prefix
}

IDS = {name: name.encode("unicode_escape").decode() for name in SPELLINGS}


def _ids(name: str) -> str:
    return IDS[name]


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    role = people_client(conn, "h173_entries")
    for k, name in enumerate(("ann", "bob"), start=1):
        conn.execute("INSERT INTO people (tenant, name, data) VALUES (1, %s, %s::jsonb)",
                     (name, json.dumps({"k": k, "status": "keep", "nest": {"a": k}})))
    yield role
    drop_client(conn, role)


def _means(hint: str, meant: str) -> bool:
    """The hint names what was meant (a column or a document path), quoted."""
    return f'"{meant}"' in hint


# What a client submits with the name `n` in it (`o`: its options).
SUBMITS: dict[str, str] = {
    "delete filter": "SELECT pgjobs.submit_delete('people', '1', "
                     "jsonb_build_object(%(n)s::text, 'x'), '{}', %(o)s::jsonb)",
    "backfill filter": "SELECT pgjobs.submit_backfill('people', '1', "
                       "jsonb_build_object(%(n)s::text, jsonb_build_object('$ne', 'x')), "
                       "'{\"age\": 1}', %(o)s::jsonb)",
    "backfill set": "SELECT pgjobs.submit_backfill('people', '1', '{}', "
                    "jsonb_build_object(%(n)s::text, 7), %(o)s::jsonb)",
    "export filter": "SELECT pgjobs.submit_export('people', '1', "
                     "jsonb_build_object(%(n)s::text, 'x'), %(o)s::jsonb)",
    "export columns": "SELECT pgjobs.submit_export('people', '1', '{}', "
                      "jsonb_build_object('columns', jsonb_build_array('id', %(n)s::text)) "
                      "|| %(o)s::jsonb)",
}


@pytest.mark.parametrize("entry", sorted(SUBMITS))
@pytest.mark.parametrize("name", sorted(SPELLINGS), ids=_ids)
def test_a_submit_refuses_a_lookalike_naming_what_it_means(
        conn: Conn, client: str, entry: str, name: str) -> None:
    jobs = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with acting_as(conn, client, scopes="1"), \
            pytest.raises(errors.InvalidParameterValue) as caught:
        conn.execute(SUBMITS[entry], {"n": name, "o": "{}"})
    diag = caught.value.diag
    assert diag.sqlstate == "22023"
    hint = diag.message_hint or ""
    assert _means(hint, SPELLINGS[name]), hint
    assert "allow_unknown_fields" in hint, hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == jobs
    # Meant as written: the option takes it.
    with acting_as(conn, client, scopes="1"):
        assert scalar(conn, SUBMITS[entry],
                      {"n": name, "o": '{"allow_unknown_fields": true}'}) > 0


@pytest.mark.parametrize("name", sorted(SPELLINGS), ids=_ids)
def test_preview_reports_a_lookalike_as_unknown(conn: Conn, client: str, name: str) -> None:
    with acting_as(conn, client, scopes="1"):
        answer = scalar(conn, "SELECT pgjobs.preview('people', '1', "
                              "jsonb_build_object(%s::text, 'x'))", (name,))
    assert answer["matches"] == 0
    assert name in answer["unknown_fields"], answer


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("name", sorted(SPELLINGS), ids=_ids)
def test_an_import_field_that_is_a_lookalike_fails_the_job(
        conn: Conn, dsn: str, tmp_path: Path, client: str, fmt: str, name: str) -> None:
    folder = allowed_folder(conn, tmp_path)
    source = one_record(folder, fmt, {name: "cy", "age": 5})
    before = conn.execute("SELECT id, tenant, name, age, data FROM people ORDER BY id").fetchall()
    row = import_as(conn, dsn, client, source, "1", {"format": fmt})
    assert row["status"] == "failed", row
    assert "[22023]" in row["error"], row["error"]
    assert _means(row["error"], SPELLINGS[name]), row["error"]
    assert conn.execute("SELECT id, tenant, name, age, data FROM people "
                        "ORDER BY id").fetchall() == before
    # Meant as written: the option imports it.
    row = import_as(conn, dsn, client, source, "1", {"format": fmt, "allow_unknown_fields": True})
    assert row["status"] == "succeeded", row


def test_an_imports_own_rows_never_judge_its_later_fields(
        conn: Conn, dsn: str, tmp_path: Path, client: str) -> None:
    """Scope 3 has no rows before the job: its first batch writes "Label",
    its second maps "label", which the job's own rows alone would call a twin."""
    folder = allowed_folder(conn, tmp_path)
    lines = [json.dumps({"Label": "x", "age": 1}), json.dumps({"label": "y", "age": 2})]
    (folder / "b.jsonl").write_text("\n".join(lines) + "\n")
    with acting_as(conn, client, scopes="3"):
        job_id = submit_import(conn, f"file://{folder}/b.jsonl", "3", {"format": "jsonl"})
    assert run_in_batches(dsn, job_id, folder / "store", 10) == "succeeded", job(conn, job_id)
    assert conn.execute("SELECT age, data FROM people WHERE tenant = 3 "
                        "ORDER BY age").fetchall() == [(1, {"Label": "x"}), (2, {"label": "y"})]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_import_field_some_row_before_it_has_is_imported(
        conn: Conn, dsn: str, tmp_path: Path, client: str, fmt: str) -> None:
    """Both spellings in the scope's rows: the one written is a field of its own."""
    conn.execute("INSERT INTO people (tenant, name, data) VALUES (1, 'cy', "
                 "'{\"Status\": 1, \"NEST\": {\"a\": 1}}')")
    folder = allowed_folder(conn, tmp_path)
    source = one_record(folder, fmt, {"Status": "z", "NEST.a": 2, "age": 6})
    row = import_as(conn, dsn, client, source, "1", {"format": fmt})
    assert row["status"] == "succeeded", row


def test_an_import_by_a_submitter_who_may_not_read_the_document_is_not_told_its_keys(
        conn: Conn, dsn: str, tmp_path: Path, client: str) -> None:
    """The twin's message names a key of the scope's rows: for a submitter
    without SELECT on the document column the field is imported as written
    (the slips of a column's name, which name no row's content, still fail)."""
    conn.execute(f"REVOKE SELECT ON people FROM {client}")
    conn.execute(f"GRANT SELECT (id, tenant, created_at, name, age) ON people TO {client}")
    folder = allowed_folder(conn, tmp_path)
    row = import_as(conn, dsn, client, one_record(folder, "jsonl", {"Status": "z", "age": 7}),
                    "1", {"format": "jsonl"})
    assert row["status"] == "succeeded", row
    assert scalar(conn, "SELECT data FROM people WHERE tenant = 1 AND age = 7") == {"Status": "z"}
    row = import_as(conn, dsn, client, one_record(folder, "jsonl", {"Name": "z"}, name="b"),
                    "1", {"format": "jsonl"})
    assert row["status"] == "failed" and 'column "name"' in row["error"], row


def test_an_imports_rows_from_before_it_are_read_in_the_targets_time_zone(
        conn: Conn, dsn: str, tmp_path: Path) -> None:
    """A `timestamp` created_at holds wall-clock time in the target's
    created_at_time_zone: a row written a minute before the job in Tokyo
    reads 9 hours after it in UTC, and would not count as from before."""
    build_target(conn, "wall", "id bigint GENERATED BY DEFAULT AS IDENTITY, scope integer, "
                 "created_at timestamp NOT NULL, data jsonb NOT NULL DEFAULT '{}'",
                 document="data", options={"created_at_time_zone": "Asia/Tokyo"})
    conn.execute("INSERT INTO wall (scope, created_at, data) VALUES "
                 "(1, (now() - interval '1 minute') AT TIME ZONE 'Asia/Tokyo', "
                 "'{\"status\": 1}')")
    folder = allowed_folder(conn, tmp_path)
    source = one_record(folder, "jsonl", {"Status": 2})
    job_id = submit_import(conn, f"file://{source}", "1", {"format": "jsonl"}, target="wall")
    run_import(dsn, job_id, f"file://{folder}/store")
    row = job(conn, job_id)
    assert row["status"] == "failed" and 'document field "status"' in row["error"], row
