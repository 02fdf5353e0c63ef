"""Imports: CSV rules (as COPY's), JSONL, gzip, field mapping (columns, document
paths, defaults, the scope column), on_duplicate, bad records and rejects,
submit-time checks (privileges, allow-list, options), the gate, a round trip
through an export, and the command line."""

from __future__ import annotations

import gzip
import json
import os
import random
import zlib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from pgjobs.poller import storage
from pgjobs.poller.importer import BadSource, Importer, _Source, csv_records
from tests.support import (
    allow,
    allowed_folder,
    claim_import,
    job,
    make_people,
    scalar,
    submit_import,
)

Conn = psycopg.Connection[Any]


NO_DOCUMENT = {"test_bad_header_fails_the_job_clearly",
               "test_unknown_jsonl_key_without_document_is_rejected"}


@pytest.fixture(autouse=True)
def _people(request: pytest.FixtureRequest) -> None:
    """Target `people` for every test but those that make their own."""
    if request.function.__name__ not in NO_DOCUMENT and "conn" in request.fixturenames:
        make_people(request.getfixturevalue("conn"))


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    """An allowed folder for sources (and the worker's storage below it)."""
    return allowed_folder(conn, tmp_path)


def people(conn: Conn, tenant: int = 1) -> list[dict[str, Any]]:
    cur = conn.execute("SELECT * FROM people WHERE tenant = %s ORDER BY id", (tenant,))
    assert cur.description is not None
    names = [c.name for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur]


def do_import(conn: Conn, dsn: str, folder: Path, name: str, data: bytes, scope: str = "1",
              options: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    path = folder / name
    path.write_bytes(data)
    job_id = submit_import(conn, f"file://{path}", scope, options)
    outcome = Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store",
                       **kw).run()
    row = job(conn, job_id)
    assert outcome.status == row["status"] or row["status"] == "queued", outcome
    return row


# --- CSV ---------------------------------------------------------------------------


def test_csv_follows_copy_rules(conn: Conn, dsn: str, src: Path) -> None:
    long_value = "x" * 300_000
    data = ("\ufeffname,age,born,active,tags,score,data\r\n"
            '"comma, and ""quotes""",1,2001-02-03,true,"{a,""b c""}",12.5,"{""k"": [1, 2]}"\r\n'
            '"two\r\nlines",,,,,,{}\r\n'
            '"",0,,false,{},,{}\r\n'
            f"h\u00e9llo \u2713 \U0001f600,2,,,,,{{}}\r\n"
            f'"{long_value}",3,,,,,{{}}\r\n').encode()
    row = do_import(conn, dsn, src, "a.csv", data)
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["rows"] == 5 and row["result"]["rejected"] == 0
    got = people(conn)
    assert [g["name"] for g in got] == ['comma, and "quotes"', "two\r\nlines", "",
                                         "h\u00e9llo \u2713 \U0001f600", long_value]
    first = got[0]
    assert (first["age"], str(first["born"]), first["active"], first["tags"],
            str(first["score"]), first["data"]) == (1, "2001-02-03", True, ["a", "b c"],
                                                    "12.50", {"k": [1, 2]})
    # An empty unquoted field is NULL (the column's default does not apply: the
    # column was given; data is NOT NULL, so it is given), a quoted empty one the
    # empty string.
    assert got[1]["age"] is None and got[1]["data"] == {}
    assert got[2]["name"] == "" and got[2]["tags"] == []
    # Key and created_at were not given: defaults.
    assert all(g["id"] is not None and g["created_at"] is not None for g in got)


def test_csv_record_splitting_matches_quotes() -> None:
    data = b'a,b\n"x\ny",2\n"q""\n",3\nlast,4'
    records, rest = csv_records(data, final=False)
    assert [data[s:e] for s, e, _ in records] == [b"a,b\n", b'"x\ny",2\n', b'"q""\n",3\n']
    assert [n for _, _, n in records] == [1, 2, 2] and data[rest:] == b"last,4"
    records, rest = csv_records(data, final=True)
    assert data[records[-1][0]:records[-1][1]] == b"last,4" and rest == len(data)


def test_document_fields_nest_and_merge(conn: Conn, dsn: str, src: Path) -> None:
    data = (b"name,data,city,owner.team,owner.role.level\n"
            b'a,"{""keep"": 1, ""owner"": {""x"": 2}}",Paris,red,3\n'
            b"b,,,,\n")
    row = do_import(conn, dsn, src, "d.csv", data)
    assert row["status"] == "succeeded", row["error"]
    got = people(conn)
    # CSV document values are strings; an empty unquoted field leaves the field
    # out, and an object all of whose fields are left out is left out too (it
    # read {"owner": {"role": {}}}: tests/test_import_empty_fields.py).
    assert got[0]["data"] == {"keep": 1, "city": "Paris",
                              "owner": {"x": 2, "team": "red", "role": {"level": "3"}}}
    assert got[1]["data"] == {}


@pytest.mark.parametrize("header, message", [
    (b"name,nope\n", 'unknown column "nope"'),
    (b"name,name\n", 'names field "name" twice'),
    (b"name,,age\n", "empty name"),
])
def test_bad_header_fails_the_job_clearly(conn: Conn, dsn: str, tmp_path: Path,
                                          header: bytes, message: str) -> None:
    make_people(conn, document=False)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    row = do_import(conn, dsn, folder, "h.csv", header + b"x,1,2\n")
    assert row["status"] == "failed" and message in row["error"]
    assert scalar(conn, "SELECT count(*) FROM people") == 0


def test_overlapping_document_paths_fail(conn: Conn, dsn: str, src: Path) -> None:
    row = do_import(conn, dsn, src, "o.csv", b"a,a.b\n1,2\n")
    assert row["status"] == "failed" and "overlap" in row["error"]


def test_scope_column_must_match(conn: Conn, dsn: str, src: Path) -> None:
    row = do_import(conn, dsn, src, "s.csv", b"tenant,name\n1,ok\n,also ok\n2,other\n",
                    options={"max_rejects": 5})
    assert row["status"] == "succeeded", row["error"]
    assert [g["name"] for g in people(conn)] == ["ok", "also ok"]
    assert people(conn, 2) == []
    assert row["result"]["rejected"] == 1
    reject = json.loads(storage.read(row["result"]["rejects_uri"]).decode())
    assert reject["line"] == 4 and "not the job's scope" in reject["reason"]


# --- JSONL and gzip ---------------------------------------------------------------


def test_jsonl_maps_keys_and_defaults(conn: Conn, dsn: str, src: Path) -> None:
    lines = [{"name": "a", "age": 1, "tags": "{x}", "data": {"d": 1}, "city": "Oslo"},
             {"name": "b", "owner": {"team": "blue"}, "meta.size": 2},
             {"id": 77, "name": "c", "active": True, "score": 1.25, "age": None}]
    data = "\n".join(json.dumps(v) for v in lines).encode() + b"\r\n\n"
    row = do_import(conn, dsn, src, "a.jsonl", data)
    assert row["status"] == "succeeded", row["error"]
    got = {g["name"]: g for g in people(conn)}
    assert got["a"]["data"] == {"d": 1, "city": "Oslo"} and got["a"]["tags"] == ["x"]
    assert got["b"]["data"] == {"owner": {"team": "blue"}, "meta": {"size": 2}}
    assert got["c"]["id"] == 77 and got["c"]["active"] is True and got["c"]["age"] is None
    assert str(got["c"]["score"]) == "1.25"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_gzip_multi_member(conn: Conn, dsn: str, src: Path, fmt: str) -> None:
    if fmt == "csv":
        head, body = b"name,age\n", [f"n{i},{i}\n".encode() for i in range(3000)]
    else:
        head, body = b"", [json.dumps({"name": f"n{i}", "age": i}).encode() + b"\n"
                           for i in range(3000)]
    data = gzip.compress(head + b"".join(body[:1000])) + gzip.compress(b"".join(body[1000:]))
    row = do_import(conn, dsn, src, f"g.{fmt}.gz", data, batch_bytes=4096)
    assert row["status"] == "succeeded", row["error"]
    assert row["payload"]["gzip"] is True and row["payload"]["format"] == fmt
    assert [g["age"] for g in people(conn)] == list(range(3000))


def _cut_gzip(data: bytes) -> bytes:
    """data gzip-compressed, flushed to a byte boundary after its first half of
    lines and cut there: the rest of the deflate stream and the gzip trailer
    are missing, yet what is there inflates without an error, ending at a
    newline (an upload cut short, or a copy that stopped)."""
    lines = data.splitlines(keepends=True)
    half = len(lines) // 2
    deflate = zlib.compressobj(wbits=31)
    return deflate.compress(b"".join(lines[:half])) + deflate.flush(zlib.Z_FULL_FLUSH)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_gzip_cut_short_fails_instead_of_succeeding_short(conn: Conn, dsn: str, src: Path,
                                                           fmt: str) -> None:
    if fmt == "csv":
        data = b"name,age\n" + b"".join(f"n{i},{i}\n".encode() for i in range(2000))
    else:
        data = b"".join(json.dumps({"name": f"n{i}", "age": i}).encode() + b"\n"
                        for i in range(2000))
    cut = _cut_gzip(data)
    row = do_import(conn, dsn, src, f"cut.{fmt}.gz", cut, batch_bytes=4096)
    assert row["status"] == "failed", row["result"]
    assert "gzip" in row["error"] and "ends before" in row["error"], row["error"]
    assert row["attempts"] == 1  # every attempt would read the same object
    with pytest.raises(BadSource) as caught:
        for _ in _Source(f"file://{src}/cut.{fmt}.gz", 0, True).blocks():
            pass
    assert caught.value.hint and "whole" in caught.value.hint


# --- duplicates ------------------------------------------------------------------------


def test_on_duplicate_modes(conn: Conn, dsn: str, src: Path) -> None:
    make = b"id,name,city\n1,one,Rome\n2,two,Lima\n"
    assert do_import(conn, dsn, src, "a.csv", make)["status"] == "succeeded"
    again = b"id,name,city\n2,TWO,Kyiv\n3,three,Baku\n"
    row = do_import(conn, dsn, src, "b.csv", again, options={"on_duplicate": "skip"})
    assert row["result"] | {} == row["result"] and row["result"]["skipped"] == 1
    assert [(g["id"], g["name"]) for g in people(conn)] == [(1, "one"), (2, "two"),
                                                           (3, "three")]
    upd = b"id,name,city\n2,TWO,Kyiv\n4,four,Oslo\n4,FOUR,Oslo\n"
    row = do_import(conn, dsn, src, "c.csv", upd, options={"on_duplicate": "update"})
    assert row["status"] == "succeeded", row["error"]
    assert (row["result"]["inserted"], row["result"]["updated"]) == (1, 2)
    got = {g["id"]: g for g in people(conn)}
    assert got[2]["name"] == "TWO" and got[2]["data"] == {"city": "Kyiv"}
    assert got[4]["name"] == "FOUR"
    row = do_import(conn, dsn, src, "d.csv", b"id,name\n5,five\n1,dup\n")
    assert row["status"] == "failed" and row["error"].startswith("line 3:")
    assert "duplicate key" in row["error"] and row["attempts"] == 1
    assert 5 not in {g["id"] for g in people(conn)}  # the batch rolled back


# --- bad records -------------------------------------------------------------------------


BAD_CSV = (b"name,age,born\n"
           b"ok1,1,2001-01-01\n"
           b"bad-count,2\n"
           b"bad-int,x,\n"
           b"bad-check,-1,\n"
           b"bad-utf8 \xff,3,\n"
           b'"unterminated,4,\n')


def test_first_bad_record_fails_with_its_line(conn: Conn, dsn: str, src: Path) -> None:
    row = do_import(conn, dsn, src, "bad.csv", BAD_CSV)
    assert row["status"] == "failed" and row["error"].startswith("line 3:"), row["error"]
    assert '"born" (field 3)' in row["error"] and '"f3"' not in row["error"], row["error"]
    assert row["attempts"] == 1  # a bad record is not retried


def test_rows_of_committed_batches_stay(conn: Conn, dsn: str, src: Path) -> None:
    data = b"name,age\n" + b"".join(f"n{i},{i}\n".encode() for i in range(500)) + b"x,y\n"
    row = do_import(conn, dsn, src, "late.csv", data, batch_bytes=1000)
    assert row["status"] == "failed" and row["error"].startswith("line 502:")
    kept = len(people(conn))
    assert 0 < kept < 500 and row["checkpoint"]["records"] == kept


def test_max_rejects_lists_every_bad_record(conn: Conn, dsn: str, src: Path) -> None:
    row = do_import(conn, dsn, src, "bad.csv", BAD_CSV, options={"max_rejects": 5})
    assert row["status"] == "succeeded", row["error"]
    assert row["result"]["rows"] == 1 and row["result"]["rejected"] == 5
    rejects = [json.loads(x) for x in storage.read(row["result"]["rejects_uri"]).splitlines()]
    assert [r["line"] for r in rejects] == [3, 4, 5, 6, 7]
    reasons = [r["reason"] for r in rejects]
    # COPY names the staging column ("f3"); the reject names the header's field.
    assert 'missing data for column "born" (field 3)' in reasons[0], reasons[0]
    assert "invalid input syntax for type integer" in reasons[1]
    assert "check constraint" in reasons[2]
    assert "invalid byte sequence" in reasons[3]
    assert "unterminated CSV quoted field" in reasons[4]
    row = do_import(conn, dsn, src, "bad2.csv", BAD_CSV, options={"max_rejects": 4})
    assert row["status"] == "failed" and row["error"].startswith("line 7:")


def test_jsonl_bad_records(conn: Conn, dsn: str, src: Path) -> None:
    data = (b'{"name": "ok", "age": 1}\n'
            b'{"name": "x", \n'
            b'[1, 2]\n'
            b'{"name": "\xff"}\n'
            b'{"age": "old"}\n'
            b'{"name": "ok2"}\n')
    row = do_import(conn, dsn, src, "b.jsonl", data, options={"max_rejects": 10})
    assert row["status"] == "succeeded", row["error"]
    rejects = [json.loads(x) for x in storage.read(row["result"]["rejects_uri"]).splitlines()]
    assert [(r["line"], r["reason"].split(":")[0].split(" ")[0]) for r in rejects] == [
        (2, "invalid"), (3, "a"), (4, "invalid"), (5, "invalid")]
    assert [g["name"] for g in people(conn)] == ["ok", "ok2"]


@pytest.mark.parametrize("first", [b'{"name": "a", "age": 1}', b' {"name": "a,b"}\r'])
def test_json_lines_imported_as_csv_fail_with_a_hint_not_a_junk_row(
        conn: Conn, dsn: str, src: Path, first: bytes) -> None:
    """A JSON Lines file imported as CSV (a .csv name, or --format csv) made its
    first line the header: every field went to the document under a name such
    as '{"name": "a"' and each later line became a junk row. The header row
    being a JSON object says which mistake it is."""
    data = first + b'\n{"name": "b", "age": 2}\n'
    row = do_import(conn, dsn, src, "wrong.csv", data, options={"format": "csv"})
    assert row["status"] == "failed" and row["attempts"] == 1, row
    assert "JSON Lines, not CSV" in row["error"], row["error"]
    assert people(conn) == []
    # A CSV header that merely starts with a brace is still a header.
    ok = do_import(conn, dsn, src, "brace.csv", b'name,"{age}"\nc,3\n')
    assert ok["status"] == "succeeded", ok["error"]


def test_unknown_jsonl_key_without_document_is_rejected(conn: Conn, dsn: str,
                                                        tmp_path: Path) -> None:
    make_people(conn, document=False)
    allow(conn, f"file://{tmp_path}")
    row = do_import(conn, dsn, tmp_path, "u.jsonl", b'{"name": "a"}\n{"nope": 1}\n')
    assert row["status"] == "failed" and row["error"].startswith("line 2: unknown column")


# --- submit-time checks -------------------------------------------------------------


def test_client_needs_insert_and_update(conn: Conn, src: Path) -> None:
    conn.execute("CREATE ROLE imp_client NOLOGIN IN ROLE pgjobs_client")
    conn.execute("GRANT SELECT ON people TO imp_client")
    conn.execute("SET ROLE imp_client")
    uri = f"file://{src}/x.csv"
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="INSERT"):
        submit_import(conn, uri)
    conn.execute("RESET ROLE")
    conn.execute("GRANT INSERT ON people TO imp_client")
    conn.execute("SET ROLE imp_client")
    assert submit_import(conn, uri) > 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="UPDATE"):
        submit_import(conn, uri, "2", {"on_duplicate": "update"})
    conn.execute("RESET ROLE")
    conn.execute("SET pgjobs.allowed_scopes = '1'")
    conn.execute("SET ROLE imp_client")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        submit_import(conn, uri, "3")


@pytest.mark.parametrize("uri", [
    "file:///etc/passwd", "file://{src}/../secret.csv", "file://{src}x/a.csv",
    "s3://bucket/a.csv", "https://example.com/a.csv", "file://relative/a.csv",
])
def test_source_outside_allow_list_is_refused(conn: Conn, src: Path, uri: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        submit_import(conn, uri.format(src=src))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize("options, code", [
    ({"format": "xml"}, "22023"), ({"gzip": "yes"}, "22023"),
    ({"on_duplicate": "replace"}, "22023"), ({"max_rejects": -1}, "22023"),
    ({"max_rejects": 1.5}, "22023"), ({"batch_ms": 1}, "22023"), ({"nope": 1}, "22023"),
])
def test_bad_options_write_nothing(conn: Conn, src: Path, options: dict[str, Any],
                                   code: str) -> None:
    with pytest.raises(psycopg.Error) as err:
        submit_import(conn, f"file://{src}/a.csv", "1", options)
    assert err.value.sqlstate == code
    assert err.value.diag.message_hint
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


def test_skip_and_update_need_a_unique_index(conn: Conn, src: Path) -> None:
    conn.execute("DROP INDEX people_tenant_id")
    conn.execute("CREATE INDEX people_tenant_id2 ON people (tenant, id)")
    for mode in ("skip", "update"):
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
            submit_import(conn, f"file://{src}/a.csv", "1", {"on_duplicate": mode})
        assert "CREATE UNIQUE INDEX" in (err.value.diag.message_hint or "")
    assert submit_import(conn, f"file://{src}/a.csv") > 0  # error: allowed
    conn.execute("ALTER TABLE people ADD PRIMARY KEY (id)")  # key alone is unique
    assert submit_import(conn, f"file://{src}/a.csv", "2", {"on_duplicate": "skip"}) > 0


def test_key_only_index_never_touches_another_scope(conn: Conn, dsn: str, src: Path) -> None:
    conn.execute("DROP INDEX people_tenant_id")
    conn.execute("ALTER TABLE people ADD PRIMARY KEY (id)")
    conn.execute("INSERT INTO people (id, tenant, name) VALUES (1, 2, 'theirs')")
    row = do_import(conn, dsn, src, "k.csv", b"id,name\n1,mine\n",
                    options={"on_duplicate": "update"})
    assert row["status"] == "succeeded" and row["result"]["skipped"] == 1
    assert people(conn, 2)[0]["name"] == "theirs" and people(conn) == []


# --- the gate ---------------------------------------------------------------------------


def test_delete_waits_for_the_import(conn: Conn, dsn: str, src: Path) -> None:
    (src / "a.csv").write_bytes(b"name\nx\n")
    imp = submit_import(conn, f"file://{src}/a.csv")
    delete = scalar(conn, "SELECT pgjobs.submit_delete('people', '1')")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.claim(ARRAY['delete'], 'w', "
                        "'30 seconds', 10)") == 0
    worker = claim_import(dsn, imp)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.claim(ARRAY['delete'], 'w', "
                        "'30 seconds', 10)") == 0
    with pytest.raises(psycopg.errors.ObjectInUse):
        conn.execute("SELECT pgjobs.submit_delete('people', '1', '{}', '{}', "
                     "'{\"on_conflict\": \"reject\"}')")
    assert Importer(dsn, imp, worker, f"file://{src}").run().status == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM pgjobs.claim(ARRAY['delete'], 'w', "
                        "'30 seconds', 10)") == 1
    assert job(conn, delete)["status"] == "running"


def test_import_waits_for_a_running_delete(conn: Conn, dsn: str, src: Path) -> None:
    delete = scalar(conn, "SELECT pgjobs.submit_delete('people', '1')")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.claim(ARRAY['delete'], 'w', "
                        "'30 seconds', 10)") == 1
    imp = submit_import(conn, f"file://{src}/a.csv")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.claim_import(%s, 'w2')", (imp,)) == 0
    assert scalar(conn, "SELECT count(*) FROM pgjobs.claim(ARRAY['import'], 'w2', "
                        "'30 seconds', 10)") == 0
    assert job(conn, delete)["status"] == "running"


# --- round trip and command line --------------------------------------------------------


def test_round_trip_through_an_export(conn: Conn, dsn: str, src: Path) -> None:
    from tests.support import run_export, submit_export

    conn.execute("""INSERT INTO people (tenant, name, age, born, active, tags, score, data)
                    SELECT 1, CASE WHEN i % 7 = 0 THEN NULL WHEN i % 5 = 0 THEN ''
                                   ELSE 'n"a,m' || E'e\\n' || i END,
                           i, DATE '2000-01-01' + i, i % 2 = 0, ARRAY['a', 'b,' || i],
                           i / 3.0, jsonb_build_object('i', i, 'nested', jsonb_build_object(
                               's', 'x"y', 'n', NULL), 'arr', jsonb_build_array(1, 'z'))
                      FROM generate_series(1, 400) i""")
    before = people(conn)
    for fmt in ("csv", "jsonl"):
        export = submit_export(conn, "1", options={"format": fmt, "gzip": fmt == "jsonl",
                                                   "destination": f"file://{src}/out"},
                               target="people")
        outcome = run_export(dsn, export, f"file://{src}/store")
        assert outcome.status == "succeeded" and outcome.result is not None
        conn.execute("DELETE FROM people")
        row = do_import(conn, dsn, src, f"copy.{fmt}", storage.read(outcome.result["uri"]),
                        options={"gzip": fmt == "jsonl"})
        assert row["status"] == "succeeded", row["error"]
        assert row["result"]["rows"] == 400
        assert people(conn) == before


def test_cli_imports_a_local_file(conn: Conn, dsn: str, src: Path) -> None:
    path = src / "cli.csv"
    path.write_bytes(b"name,age\na,1\nb,2\n")
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", f"file://{src}/store",
                                       "import", "people", str(path), "--scope", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["rows"] == 2
    result = CliRunner().invoke(main, ["--dsn", dsn, "import", "people", str(path),
                                       "--scope", "1", "--detach"])
    assert result.exit_code == 0 and result.stdout.strip().isdigit()
    result = CliRunner().invoke(main, ["--dsn", dsn, "import", "people", "/etc/passwd",
                                       "--scope", "1"])
    assert result.exit_code != 0 and "allowed storage prefix" in result.output
    result = CliRunner(env={"PGJOBS_SCOPE": "1"}).invoke(
        main, ["--dsn", dsn, "import", "people", str(path)])
    assert result.exit_code == 2  # --scope never comes from the environment


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_a_record_that_reads_as_copys_end_marker_is_data(conn: Conn, dsn: str, src: Path,
                                                         newline: bytes) -> None:
    """A CSV record `\\.` alone on its line is the value `\\.` (RFC 4180; and so
    PostgreSQL 18 reads it), but PostgreSQL 17 and older's COPY took it for the
    end of the data and dropped the rest of the batch: the import succeeded
    with the records before it only. Quoted, inside a value, it was fine."""
    lines = [b"name", b"a", b"\\.", b"b", b'"x', b"\\.", b'y"', b"c", b"\\."]
    row = do_import(conn, dsn, src, "marker.csv", newline.join(lines))
    assert row["status"] == "succeeded", row["error"]
    assert [p["name"] for p in people(conn)] == ["a", "\\.", "b", "x\n\\.\ny".replace(
        "\n", newline.decode()), "c", "\\."]
    assert row["result"]["rows"] == row["result"]["records"] == 6


@pytest.mark.parametrize("body", [b"a,1\r\nb,2", b"a,1\r\n\r\nb,2", b"a,1\r\nb,2\r"])
def test_crlf_source_whose_last_line_has_no_line_end(conn: Conn, dsn: str, src: Path,
                                                     body: bytes) -> None:
    """COPY takes the line-end style from the first line: the newline the importer
    gave the last record failed a CRLF source (or, with max_rejects, rejected a
    good record and succeeded short). The blank line takes the record-by-record
    path."""
    for scope, options in (("1", {}), ("2", {"max_rejects": 5})):
        row = do_import(conn, dsn, src, f"crlf{scope}.csv", b"name,age\r\n" + body,
                        scope=scope, options=options)
        assert row["status"] == "succeeded", row["error"]
        assert row["result"]["rejected"] == 0 and row["result"]["rows"] == 2
        assert [(p["name"], p["age"]) for p in people(conn, int(scope))] == [("a", 1), ("b", 2)]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_bad_record_after_values_with_newlines_is_the_one_rejected(
        conn: Conn, dsn: str, src: Path, newline: bytes) -> None:
    """COPY numbers physical lines (a quoted newline counts): the importer took
    that number for a record's index, cut out a later good record, and failed
    the job on the bad one it then staged again (naming no line, and the
    staging column "f2") where max_rejects allowed it."""
    lines = [b"name,age", b'"a', b'b",1', b'"c', b'd",2', b"bad", b"e,3", b"f,4", b""]
    data = newline.join(lines)
    row = do_import(conn, dsn, src, "nl.csv", data, options={"max_rejects": 5})
    assert row["status"] == "succeeded", row["error"]
    nl = newline.decode()
    rejects = [json.loads(x) for x in storage.read(row["result"]["rejects_uri"]).splitlines()]
    assert [p["name"] for p in people(conn)] == [f"a{nl}b", f"c{nl}d", "e", "f"], rejects
    rejects = [json.loads(x) for x in storage.read(row["result"]["rejects_uri"]).splitlines()]
    assert [(r["line"], r["record"].rstrip()) for r in rejects] == [(6, "bad")], rejects
    assert '"age" (field 2)' in rejects[0]["reason"], rejects[0]
    row = do_import(conn, dsn, src, "nl2.csv", data, scope="2")
    assert row["status"] == "failed" and row["error"].startswith("line 6:"), row["error"]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_rejects_name_the_bad_records_among_random_multiline_values(
        conn: Conn, dsn: str, src: Path, newline: bytes) -> None:
    """Where the bad records fall among values holding newlines (LF, CR, CRLF
    inside quotes) and `\\.` records, each is the one rejected and every good
    record is imported once."""
    rng = random.Random(7 if newline == b"\n" else 8)
    for scope in range(1, 6):
        lines = [b"name,age"]
        good, bad = [], []
        for i in range(rng.randint(5, 25)):
            kind = rng.random()
            if kind < 0.2:
                bad.append((newline.join(lines) + newline).count(b"\n") + 1)
                lines.append(b"bad")  # one field: missing data for "age"
                continue
            name = rng.choice(["v", "a\nb", "c\rd", "e\r\nf", "\\.", "g,h", 'q"'])
            if name == "\\." and rng.random() < 0.5:
                bad.append((newline.join(lines) + newline).count(b"\n") + 1)
                lines.append(b"\\.")  # a record of one field: rejected too
                continue
            quoted = '"' + name.replace('"', '""') + '"'
            lines.append(f"{quoted},{i}".encode())
            good.append((name, i))
        data = newline.join(lines) + newline
        row = do_import(conn, dsn, src, f"r{scope}.csv", data, scope=str(scope),
                        options={"max_rejects": 100})
        assert row["status"] == "succeeded", (data, row["error"])
        assert [(p["name"], p["age"]) for p in people(conn, scope)] == good, data
        if bad:
            rejects = [json.loads(x)
                       for x in storage.read(row["result"]["rejects_uri"]).splitlines()]
            assert [r["line"] for r in rejects] == bad, data


@pytest.mark.parametrize("change", ["cut", "grown"])
def test_a_local_source_changed_while_it_is_read_fails_the_job(
        conn: Conn, dsn: str, src: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """A file rewritten in place (`cp` truncates it, then writes) or still being
    written while the import reads it: the importer read to whatever end the
    file had then, and succeeded with a prefix of the rows (or more bytes than
    its result said). It reads the size it began with, exactly, as from an
    object store, and a different end fails the job."""
    monkeypatch.setattr(storage, "READ_BLOCK", 16 * 1024)
    body = b"".join(f"n{i},{i}\n".encode() for i in range(20000))
    path = src / f"{change}.csv"
    data = b"name,age\n" + body
    path.write_bytes(data)

    def changed(records: int, done: int, total: int | None) -> None:
        if records and not getattr(changed, "once", False):
            changed.once = True  # type: ignore[attr-defined]
            if change == "cut":
                os.truncate(path, data.index(b"\n", len(data) // 4) + 1)  # whole lines
            else:
                with path.open("ab") as f:
                    f.write(b"late,1\n" * 1000)

    job_id = submit_import(conn, f"file://{path}")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store", batch_bytes=4096,
             on_progress=changed).run()
    row = job(conn, job_id)
    assert row["status"] == "failed", row["result"]
    assert "changed while it was read" in row["error"], row["error"]
    assert len(people(conn)) < 20000
