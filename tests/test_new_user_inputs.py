"""Arguments a new user gets wrong on the first day (reviewer h2): each is
refused with 22023 and a hint before anything is written, never read as
something else."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, scalar, seed

Conn = psycopg.Connection[Any]


def _refused(conn: Conn, sql: str) -> psycopg.errors.Diagnostic:
    jobs = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(sql).fetchall()
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == jobs
    assert caught.value.diag.message_hint
    return caught.value.diag


# A NULL filter (a client's unset variable) used to be read as {}: every row
# of the scope. SQL reads NULL as unknown, and submit_backfill refused it
# already; a delete of the whole scope must be asked for with {}.
NULL_FILTER = {
    "submit_delete": "SELECT pgjobs.submit_delete('user_table_rows', '1', NULL)",
    "submit_delete exclude": "SELECT pgjobs.submit_delete('user_table_rows', '1', NULL, '{2}')",
    "submit_export": "SELECT pgjobs.submit_export('user_table_rows', '1', NULL)",
    "preview": "SELECT pgjobs.preview('user_table_rows', '1', NULL)",
    "visible": "SELECT * FROM pgjobs.visible('user_table_rows', '1', NULL)",
    "visible_count": "SELECT pgjobs.visible_count('user_table_rows', '1', NULL)",
    "submit_backfill": "SELECT pgjobs.submit_backfill('user_table_rows', '1', NULL, '{\"n\": 1}')",
}


@pytest.mark.parametrize("call", sorted(NULL_FILTER))
def test_a_null_filter_is_refused_not_read_as_every_row(conn: Conn, call: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    diag = _refused(conn, NULL_FILTER[call])
    assert "filter" in (diag.message_primary or "")
    assert "{}" in (diag.message_hint or "")
    # Nothing is masked: a read of the scope still sees all of it.
    assert scalar(conn, "SELECT pgjobs.visible_count('user_table_rows', '1')") == 10


# MongoDB's {"$set": {...}} (and its $inc, $unset) used to add a document
# field named "$set" to every row and leave the fields meant as they were.
@pytest.mark.parametrize("set_", [
    '{"$set": {"label2": "x"}}',
    '{"$unset": {"k": ""}}',
    '{"$inc": {"k": 1}}',
    '{"nest.$set": 1}',
    '{"k": 1, "$set": {"k": 2}}',
])
def test_backfill_set_takes_no_operators(conn: Conn, set_: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    diag = _refused(conn, "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', "
                          f"'{set_}')")
    assert "$" in (diag.message_primary or "")
    assert "no operators" in (diag.message_primary or "")


def test_a_dollar_column_is_still_set(conn: Conn) -> None:
    # A column is not a document field: one whose name starts with $ keeps
    # working (only document paths are operator-like).
    target = make_rows_target(conn)
    seed(conn, target, 30)
    conn.execute('ALTER TABLE user_table_rows ADD COLUMN "$tag" text')
    job_id = scalar(conn, "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', "
                          "'{\"$tag\": \"x\"}')")
    conn.execute("CALL pgjobs.run_job(%s)", (job_id,))
    assert scalar(conn, "SELECT count(*) FROM user_table_rows "
                        "WHERE table_id = 1 AND \"$tag\" = 'x'") > 0


# run_at "infinity" was accepted: a writing job that never comes due holds its
# scope's gate for good, and pgjobs.stats() (the dashboard, /metrics) failed
# with 22008 for everyone once such a job was queued.
SUBMITS = {
    "delete": "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}', %s::jsonb)",
    "backfill": "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', '{\"n\": 1}', "
                "%s::jsonb)",
    "export": "SELECT pgjobs.submit_export('user_table_rows', '1', '{}', %s::jsonb)",
    "custom": "SELECT pgjobs.submit('thumbnail', 'user_table_rows', '1', '{}', %s::jsonb)",
    "items": "SELECT pgjobs.submit_items('thumbnail', 'user_table_rows', '1', '[{}]', %s::jsonb)",
}


@pytest.mark.parametrize("kind", sorted(SUBMITS))
@pytest.mark.parametrize("when", ["infinity", "-infinity", "Infinity", " -INFINITY "])
def test_run_at_must_be_finite(conn: Conn, kind: str, when: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    jobs = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(SUBMITS[kind], (json.dumps({"run_at": when}),))
    assert '"run_at"' in (caught.value.diag.message_primary or "")
    assert caught.value.diag.message_hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == jobs
    assert scalar(conn, "SELECT pgjobs.stats() IS NOT NULL")
    # A finite run_at still works.
    conn.execute(SUBMITS[kind], (json.dumps({"run_at": "2030-01-01T00:00:00Z"}),))


# An integer option written 5.0 (json.dumps of a Python float) passed the
# integer check and then failed the cast with 22P02 and no hint; every
# integer option of every entry point goes through pgjobs._option_int.
WHOLE = {
    "priority": "SELECT pgjobs.submit('thumbnail', 'user_table_rows', '1', '{}', %s::jsonb)",
    "max_attempts": "SELECT pgjobs.submit('thumbnail', 'user_table_rows', '1', '{}', %s::jsonb)",
    "page_size": "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}', %s::jsonb)",
    "page_ms": "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', '{\"n\": 1}', "
               "%s::jsonb)",
    "time_limit_ms": "SELECT pgjobs.preview('user_table_rows', '1', '{}', '{}', %s::jsonb)",
    "parallel": "SELECT pgjobs.submit_export('user_table_rows', '1', '{}', %s::jsonb)",
    "chunk_rows": "SELECT pgjobs.submit_export('user_table_rows', '1', '{}', %s::jsonb)",
    "max_rejects": "SELECT pgjobs.submit_import('user_table_rows', '1', "
                   "'file:///srv/in/rows.csv', %s::jsonb)",
    "batch_ms": "SELECT pgjobs.submit_import('user_table_rows', '1', "
                "'file:///srv/in/rows.csv', %s::jsonb)",
    "concurrency": "SELECT pgjobs.submit_items('thumbnail', 'user_table_rows', '1', '[{}]', "
                   "%s::jsonb)",
    "max_parallel": "SELECT pgjobs.set_defaults(%s::jsonb)",
    "runners": "SELECT pgjobs.schedule(%s::jsonb)",
}


@pytest.mark.parametrize("option", sorted(WHOLE))
def test_an_integer_option_written_with_a_decimal_point_is_22023(conn: Conn,
                                                                 option: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    conn.execute("SELECT pgjobs.allow_storage('file:///srv/in/')")
    jobs = scalar(conn, "SELECT count(*) FROM pgjobs.jobs")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(WHOLE[option], (f'{{"{option}": 2.0}}',))
    assert f'"{option}"' in (caught.value.diag.message_primary or "")
    assert "decimal point" in (caught.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == jobs


# The typo guard refused {"data.status": ...} and {"Label": ...} telling the
# user only to check the spelling; the two commonest slips are named.
GUESSES = {
    '{"data.k": 1}': 'write "k", not "data.k"',
    '{"DATA.k": 1}': 'write "k", not "DATA.k"',
    '{"data.nest.a": {"$ne": 1}}': 'write "nest.a", not "data.nest.a"',
    '{"Label": "x"}': 'column "label"',
    '{"$or": [{"k": 1}, {"N": {"$gt": 1}}]}': 'column "n"',
    # white space around a name (hX pass): the hint names what was meant
    '{" n": 1}': 'column "n"',
    '{"k ": 1}': 'write "k", not "k "',
    '{"nest. a": 1}': 'write "nest.a", not "nest. a"',
}


@pytest.mark.parametrize("filter_", sorted(GUESSES))
@pytest.mark.parametrize("call", [
    "SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb)",
    "SELECT pgjobs.submit_backfill('user_table_rows', '1', %s::jsonb, '{\"n\": 0}')",
    "SELECT pgjobs.submit_export('user_table_rows', '1', %s::jsonb)",
])
def test_the_typo_guard_names_the_likely_field(conn: Conn, filter_: str, call: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(call, (filter_,))
    assert GUESSES[filter_] in (caught.value.diag.message_hint or "")
    assert "allow_unknown_fields" in (caught.value.diag.message_hint or "")


def test_the_typo_guard_names_a_column_asked_for_in_another_case(conn: Conn) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute("SELECT pgjobs.submit_export('user_table_rows', '1', '{}', "
                     "'{\"columns\": [\"id\", \"LABEL\"]}')")
    assert 'column "label"' in (caught.value.diag.message_hint or "")


# set creates fields and is not typo-checked; but {"Label": "x"} (meant for the
# column label) and {"data.k": 1} (meant for the field k) wrote a new document
# field into every row of the scope and left the meant value as it was.
@pytest.mark.parametrize(("set_", "guess"), [
    ('{"Label": "x"}', 'column "label"'),
    ('{"N": 1}', 'column "n"'),
    ('{"data.k": 9}', 'write "k", not "data.k"'),
    ('{"Data.k": 9}', 'write "k", not "Data.k"'),
    ('{"n": 1, "data.nest.a": 9}', 'write "nest.a", not "data.nest.a"'),
    ('{" label": "x"}', 'column "label"'),
    ('{"label\u00a0": "x"}', 'column "label"'),
    ('{" k": 9}', 'write "k", not " k"'),
])
def test_backfill_set_refuses_a_likely_slip(conn: Conn, set_: str, guess: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    diag = _refused(conn, "SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', "
                          f"'{set_}')")
    assert "set" in (diag.message_primary or "")
    assert guess in (diag.message_hint or "")
    # Meant as written: the option lets it through, and new fields still pass.
    conn.execute("SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', %s::jsonb, "
                 "'{\"allow_unknown_fields\": true}')", (set_,))
    conn.execute("SELECT pgjobs.submit_backfill('user_table_rows', '2', '{}', "
                 "'{\"brand_new\": 1, \"nest.b\": 2}')")


def test_backfill_set_of_an_existing_field_in_a_column_s_other_case_passes(conn: Conn) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    conn.execute("""UPDATE user_table_rows SET data = data || '{"Label": "y"}'
                     WHERE id = (SELECT min(id) FROM user_table_rows WHERE table_id = 1)""")
    conn.execute("SELECT pgjobs.submit_backfill('user_table_rows', '1', '{}', "
                 "'{\"Label\": \"x\"}')")


# An outside worker's heartbeat stored done = -5 and a checkpoint "x" (a JSON
# string), while complete already refused a result that is not an object.
@pytest.mark.parametrize("args", ["-5, NULL", "NULL, '\"x\"'", "NULL, '[1]'", "1, 'null'"])
def test_heartbeat_refuses_a_negative_done_or_a_checkpoint_that_is_not_an_object(
        conn: Conn, args: str) -> None:
    target = make_rows_target(conn)
    job_id = scalar(conn, "SELECT pgjobs.submit('thumbnail', 'user_table_rows', '1')")
    worker = scalar(conn, "SELECT worker FROM pgjobs.claim(ARRAY['thumbnail'], 'w')")
    assert target and worker
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(f"SELECT pgjobs.heartbeat(%s, %s, {args})", (job_id, worker))
    assert caught.value.diag.message_hint
    row = conn.execute("SELECT done, checkpoint, status FROM pgjobs.jobs WHERE id = %s",
                       (job_id,)).fetchone()
    assert row is not None and row[0] >= 0 and row[2] == "running"
    assert row[1] is None or isinstance(row[1], dict)
    # The same worker goes on with good values.
    assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 3, '{\"cursor\": 3}')",
                  (job_id, worker))


# disallow_storage of a prefix that is not listed (a typo, or a folder under a
# listed prefix) removed nothing and said nothing: the administrator believed
# the access was revoked while the broader prefix still allowed it.
def _warnings(conn: Conn, sql: str) -> list[str]:
    seen: list[str] = []

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING":
            seen.append(f"{diag.message_primary} | {diag.message_hint}")

    conn.add_notice_handler(keep)
    try:
        conn.execute(sql)
    finally:
        conn.remove_notice_handler(keep)
    return seen


def test_disallow_storage_warns_when_access_is_not_revoked(conn: Conn) -> None:
    conn.execute("SELECT pgjobs.allow_storage('s3://bucket/tenants')")
    conn.execute("SELECT pgjobs.allow_storage('s3://bucket/other')")
    typo = _warnings(conn, "SELECT pgjobs.disallow_storage('s3://bucket/tenant')")
    assert len(typo) == 1 and "nothing removed" in typo[0] and "storage_allow" in typo[0]
    under = _warnings(conn, "SELECT pgjobs.disallow_storage('s3://bucket/tenants/acme')")
    assert any("still allowed" in w and "'s3://bucket/tenants'" in w for w in under)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.storage_allow") == 2
    # Removing a listed prefix that nothing else covers is silent.
    assert _warnings(conn, "SELECT pgjobs.disallow_storage('s3://bucket/tenants/')") == []
    assert scalar(conn, "SELECT count(*) FROM pgjobs.storage_allow") == 1


# NULL options: submit, submit_delete, submit_backfill, submit_items,
# register_target and set_defaults refused them, while submit_export,
# submit_import and preview read them as {}. One rule: refused.
NULL_OPTIONS = {
    "submit_export": "SELECT pgjobs.submit_export('user_table_rows', '1', '{}', NULL)",
    "submit_import": "SELECT pgjobs.submit_import('user_table_rows', '1', "
                     "'file:///srv/in/rows.csv', NULL)",
    "preview": "SELECT pgjobs.preview('user_table_rows', '1', '{}', '{}', NULL)",
    "submit_delete": "SELECT pgjobs.submit_delete('user_table_rows', '1', '{}', '{}', NULL)",
    "submit": "SELECT pgjobs.submit('thumbnail', 'user_table_rows', '1', '{}', NULL)",
}


@pytest.mark.parametrize("call", sorted(NULL_OPTIONS))
def test_null_options_are_refused_by_every_entry_point(conn: Conn, call: str) -> None:
    target = make_rows_target(conn)
    seed(conn, target, 30)
    conn.execute("SELECT pgjobs.allow_storage('file:///srv/in/')")
    diag = _refused(conn, NULL_OPTIONS[call])
    assert "options must be a JSON object" in (diag.message_primary or "")
    assert "'{}'" in (diag.message_hint or "")


# An import whose CSV header says "Name" (spreadsheets capitalise) put every
# record's name into the document field "Name" and left the column name NULL;
# "data.age" nested a field "data" in the document.
@pytest.mark.parametrize(("name", "data", "guess", "stored"), [
    ("caps.csv", b"Name,age\nann,3\n", 'column "name"', {"Name": "ann"}),
    ("nested.jsonl", b'{"name": "bo", "data.k": 1}\n', 'write "k"', {"data": {"k": 1}}),
    ("upper.jsonl", b'{"name": "cy", "Data.k": 1}\n', 'write "k"', {"Data": {"k": 1}}),
    # A header "name, age" (a space after the comma) put every age into the
    # document field " age" and left the column NULL, and the job succeeded
    # (hX pass); so did "age " and a no-break space from a spreadsheet.
    ("spaced.csv", b"name, age\nann,3\n", 'column "age"', {" age": "3"}),
    ("trailing.csv", b"name,age \nann,3\n", 'column "age"', {"age ": "3"}),
    ("nbsp.csv", "name,\u00a0age\nann,3\n".encode(), 'column "age"', {"\u00a0age": "3"}),
    ("quoted.csv", b'"name"," Age "\nann,3\n', 'column "age"', {" Age ": "3"}),
    ("spaced.jsonl", b'{"name": "bo", " age": 3}\n', 'column "age"', {" age": 3}),
    ("field.jsonl", b'{"name": "bo", "k ": 1}\n', 'write "k"', {"k ": 1}),
    # A CSV saved with another separator (";" where the decimal mark is a
    # comma, a tab, "|") read as one field per line: every record went whole
    # into the document field "name;age", every column kept its default, and
    # the import succeeded (hX pass).
    ("semi.csv", b"name;age\nann;3\n", 'separated by ";"', {"name;age": "ann;3"}),
    ("tab.csv", b"name\tage\nann\t3\n", "separated by tabs", {"name\tage": "ann\t3"}),
    ("pipe.csv", b"title|status\nx|y\n", 'separated by "|"', {"title|status": "x|y"}),
    ("mixed.csv", b"name,k;n\nann,1;2\n", 'separated by ";"', {"k;n": "1;2"}),
])
def test_import_refuses_a_field_that_is_a_slip(conn: Conn, dsn: str, tmp_path: Any,
                                               name: str, data: bytes, guess: str,
                                               stored: dict[str, Any]) -> None:
    from pgjobs.poller.importer import Importer
    from tests.support import allowed_folder, claim_import, job, make_people, submit_import

    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    (folder / name).write_bytes(data)
    job_id = submit_import(conn, f"file://{folder / name}", "1")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "failed" and guess in row["error"], row["error"]
    if name.endswith(".csv"):  # (a JSONL record's error carries the rejects' hint)
        assert "allow_unknown_fields" in row["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 0
    # Meant as written: the option imports it as a document field.
    job_id = submit_import(conn, f"file://{folder / name}", "1", {"allow_unknown_fields": True})
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    assert job(conn, job_id)["status"] == "succeeded"
    assert conn.execute("SELECT data FROM people").fetchone() == (stored,)


def test_a_separator_in_a_name_is_the_csv_header_s_slip_only(conn: Conn, dsn: str,
                                                             tmp_path: Any) -> None:
    """A JSONL key holding ";" is what the record says (no separator to get
    wrong), and so is a CSV field name with a separator but one name (";x")."""
    from pgjobs.poller.importer import Importer
    from tests.support import allowed_folder, claim_import, job, make_people, submit_import

    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    for scope, (name, data) in enumerate([("k.jsonl", b'{"name": "bo", "a;b": 1}\n'),
                                          ("one.csv", b'name,";x",y|\nann,1,2\n')], 1):
        (folder / name).write_bytes(data)
        job_id = submit_import(conn, f"file://{folder / name}", str(scope))
        Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
        assert job(conn, job_id)["status"] == "succeeded", job(conn, job_id)["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 2


def test_import_allow_unknown_fields_is_a_boolean(conn: Conn, tmp_path: Any) -> None:
    from tests.support import allowed_folder, make_people

    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    diag = _refused(conn, "SELECT pgjobs.submit_import('people', '1', "
                          f"'file://{folder}/a.csv', '{{\"allow_unknown_fields\": \"yes\"}}')")
    assert '"allow_unknown_fields"' in (diag.message_primary or "")


def test_an_import_that_mapped_such_a_field_before_goes_on(conn: Conn, dsn: str,
                                                           tmp_path: Any) -> None:
    """An import begun before the check (its checkpoint maps "Name" to the
    document already) goes on as it began: the check is made when a field is
    first mapped, not on every batch."""
    from pgjobs.poller.importer import Importer
    from tests.support import allowed_folder, claim_import, job, make_people, submit_import

    make_people(conn)
    folder = allowed_folder(conn, tmp_path)
    (folder / "caps.csv").write_bytes(b"Name,age\nann,3\n")
    job_id = submit_import(conn, f"file://{folder / 'caps.csv'}", "1")
    conn.execute("""UPDATE pgjobs.jobs SET checkpoint = jsonb_build_object('mapping',
                        '{"Name": "document data", "age": "column age integer"}'::jsonb)
                     WHERE id = %s""", (job_id,))
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert conn.execute("SELECT data, age FROM people").fetchone() == ({"Name": "ann"}, 3)
