"""An attacker's pass over imports (h150), as a pgjobs_client confined by
pgjobs.allowed_scopes to tenant 1 of the shared `people` table: what the
earlier passes did not try (tests/test_adversarial_import.py holds the scope
column named every way, another tenant's key in every on_duplicate mode;
tests/test_import_privileges.py column grants; tests/test_trust_rls.py
policies; tests/test_trust_trigger_scope.py triggers;
tests/test_trust_storage.py the allow-list's escapes for exports;
tests/test_import_resume.py a worker killed at random points).

Here: options that would steer COPY or map a field onto another column, the
scope spelt another way at submit, import sources outside the allow-list
(file paths to /etc and /proc, userinfo, hosts, the metadata address),
headers naming system columns or carrying SQL, values carrying SQL, an
exclusion constraint whose error would quote another tenant's row, a gzip
bomb of one endless line, records of thousands of fields. Each passes on
main as a guard but one: a CSV header wider than the worker's staging table
failed with PostgreSQL's words about that table, and no hint."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgjobs.poller import importer
from tests.support import (
    allowed_folder,
    build_target,
    drop_client,
    job,
    people_client,
    run_import,
    submit_import,
)
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]


@pytest.fixture
def tenant(conn: Conn, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A confined client of tenant 1, an allowed folder, and tenant 2's row."""
    folder = allowed_folder(conn, tmp_path)
    role = people_client(conn, "h150")
    conn.execute("INSERT INTO people (id, tenant, name, data)"
                 " VALUES (1, 2, 'theirs', '{\"k\": 1}')")
    conn.execute("SELECT setval(pg_get_serial_sequence('people', 'id'), 100)")
    yield role, folder
    drop_client(conn, role)


def _as_client(conn: Conn, role: str, source: str, scope: str = "1",
               options: dict[str, Any] | None = None, target: str = "people") -> int:
    with acting_as(conn, role, scopes="1"):
        return submit_import(conn, source, scope, options, target)


def _others(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, tenant, name, data FROM people WHERE tenant <> 1"
                        " ORDER BY id").fetchall()


def _jobs(conn: Conn) -> int:
    return int(conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone()[0])  # type: ignore[index]


# Options a client might hope reach COPY or remap fields: none exists.
STEERING = {
    "columns": {"name": "tenant"},
    "mapping": {"name": "id"},
    "delimiter": "'; DROP TABLE people; --",
    "quote": "'",
    "escape": "\\",
    "null": "2",
    "encoding": "SQL_ASCII",
    "header": False,
    "force_null": ["tenant"],
    "copy_options": "FORMAT binary",
    "scope_column": "name",
    "key_column": "name",
}


@pytest.mark.parametrize("option", sorted(STEERING))
def test_an_option_that_would_steer_copy_or_the_mapping_is_refused(
        conn: Conn, tenant: tuple[str, Path], option: str) -> None:
    role, folder = tenant
    with pytest.raises(errors.InvalidParameterValue) as exc:
        _as_client(conn, role, f"file://{folder}/a.csv", options={option: STEERING[option]})
    assert option in exc.value.diag.message_primary  # type: ignore[operator]
    assert exc.value.diag.message_hint
    assert _jobs(conn) == 0


@pytest.mark.parametrize("scope", ["2", " 2", "02", "2.0", "+2", "2 ", "0x2", "1;2",
                                   "{1,2}", "１"])
def test_another_scope_in_any_spelling_is_refused_at_submit(
        conn: Conn, tenant: tuple[str, Path], scope: str) -> None:
    role, folder = tenant
    (folder / "a.csv").write_bytes(b"name\nx\n")
    with pytest.raises(psycopg.Error) as exc:
        _as_client(conn, role, f"file://{folder}/a.csv", scope=scope)
    assert exc.value.sqlstate in ("42501", "22023", "22P02"), (scope, exc.value.sqlstate)
    assert exc.value.diag.message_hint, scope
    assert _jobs(conn) == 0


def test_the_own_scope_spelt_another_way_lands_in_the_own_scope(
        conn: Conn, dsn: str, tenant: tuple[str, Path]) -> None:
    role, folder = tenant
    (folder / "a.csv").write_bytes(b"name\nmine\n")
    job_id = _as_client(conn, role, f"file://{folder}/a.csv", scope=" 01")
    assert job(conn, job_id)["scope"] == "1"
    assert run_import(dsn, job_id, f"file://{folder}/store").status == "succeeded"
    assert conn.execute("SELECT tenant FROM people WHERE name = 'mine'").fetchall() == [(1,)]


def _outside(folder: Path) -> list[str]:
    return [
        "file:///etc/passwd",
        "file:///proc/self/environ",
        "file:///proc/self/cwd/postgresql.conf",
        f"file://{folder}/../../../../etc/passwd",
        f"file://{folder}/%2e%2e/%2e%2e/etc/passwd",
        f"file://{folder}%2f..%2f..%2fetc%2fpasswd",
        f"file://otherhost{folder}/a.csv",
        f"file://user:pw@{folder}/a.csv",
        f"file://{folder}/a.csv%00.csv",
        f"file://{folder}/a.csv\n",
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/x.csv",
        "https://127.0.0.1/a.csv",
        "https://user:pw@169.254.169.254/a.csv",
        "s3://169.254.169.254/latest/meta-data",
        "s3://bucket@169.254.169.254/a.csv",
        "gs://x/a.csv",
        "az://x/a.csv",
        "memory:///a.csv",
    ]


def test_a_source_outside_the_allow_list_is_refused_before_any_read(
        conn: Conn, tenant: tuple[str, Path]) -> None:
    role, folder = tenant
    failures = []
    for source in _outside(folder):
        try:
            _as_client(conn, role, source)
        except (errors.InsufficientPrivilege, errors.InvalidParameterValue) as exc:
            if not exc.diag.message_hint:
                failures.append(f"{source!r}: no hint")
            continue
        except psycopg.Error as exc:
            failures.append(f"{source!r}: {exc.sqlstate} {exc}")
            continue
        failures.append(f"{source!r}: accepted")
    assert not failures, "\n".join(failures)
    assert _jobs(conn) == 0


HEADERS = {
    "system columns": b"ctid,xmin,name\n(0,1),1,a\n",
    "oid and tableoid": b"tableoid,oid,name\n1,1,b\n",
    "quote in a name": b'"na""me",name\nx,c\n',
    "sql in a name": b'"name"") VALUES (1); DROP TABLE people; --",name\nx,d\n',
    "sql in a value": b"name\n\"'); DELETE FROM people; --\"\n",
    "dollar quote in a value": b"name\n$$; DELETE FROM people; $$\n",
    "placeholder in a value": b"name\n%s %L %I $1\n",
}


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_a_hostile_header_or_value_is_data_never_sql(
        conn: Conn, dsn: str, tenant: tuple[str, Path], case: str) -> None:
    """Whatever the job's outcome, the table and the other tenant's row are as
    they were, and every row written is tenant 1's, its values as sent."""
    role, folder = tenant
    (folder / "h.csv").write_bytes(HEADERS[case])
    before = _others(conn)
    job_id = _as_client(conn, role, f"file://{folder}/h.csv", options={"max_rejects": 10})
    outcome = run_import(dsn, job_id, f"file://{folder}/store")
    assert _others(conn) == before, outcome
    assert conn.execute("SELECT count(*) FROM people WHERE tenant <> 1"
                        " OR tenant IS NULL").fetchone() == (1,)
    if case.endswith("value") and outcome.status == "succeeded":
        sent = HEADERS[case].split(b"\n")[1].strip(b'"').decode()
        assert conn.execute("SELECT name FROM people WHERE tenant = 1").fetchall() == [(sent,)]


def test_an_exclusion_error_never_quotes_the_other_tenants_row(
        conn: Conn, dsn: str, tenant: tuple[str, Path]) -> None:
    """PostgreSQL's DETAIL of an exclusion names the existing row's values
    (another tenant's booking here); pgjobs runs the insert as its owner, who
    may read them, for a client who may not: neither the job's error nor its
    rejects carry it."""
    role, folder = tenant
    build_target(conn, "bookings", """
            id bigint GENERATED BY DEFAULT AS IDENTITY,
            scope integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            room integer NOT NULL,
            during int4range NOT NULL""", index="unique")
    conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    conn.execute("ALTER TABLE bookings ADD CONSTRAINT one_booking"
                 " EXCLUDE USING gist (room WITH =, during WITH &&)")
    conn.execute("INSERT INTO bookings (scope, room, during) VALUES (2, 7, '[424242,434343)')")
    conn.execute(f"GRANT INSERT (scope, room, during) ON bookings TO {role}")
    (folder / "b.csv").write_bytes(b"room,during\n7,\"[1,999999)\"\n")
    for max_rejects in (0, 10):
        job_id = _as_client(conn, role, f"file://{folder}/b.csv", target="bookings",
                            options={"max_rejects": max_rejects})
        run_import(dsn, job_id, f"file://{folder}/store")
        row = job(conn, job_id)
        said = json.dumps([row["error"], row["result"]]) + json.dumps(conn.execute(
            "SELECT reason, record FROM pgjobs.import_rejects WHERE job_id = %s",
            (job_id,)).fetchall())
        assert "424242" not in said and "434343" not in said, said
        assert conn.execute("SELECT count(*) FROM bookings").fetchone() == (1,)


def test_a_gzip_bomb_of_one_endless_line_fails_for_good_at_the_record_ceiling(
        conn: Conn, dsn: str, tenant: tuple[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A few kB of gzip that inflate to one line past the worker's record
    ceiling (64 MiB, lowered here to 1 MiB to keep the test small) fail the
    job for good naming the line: the worker never holds the whole line."""
    role, folder = tenant
    monkeypatch.setattr(importer, "MAX_RECORD", 1 << 20)
    for fmt, head in (("csv", b"name\n\""), ("jsonl", b'{"name": "')):
        path = folder / f"bomb.{fmt}.gz"
        path.write_bytes(gzip.compress(head + b"a" * (4 << 20), 9))
        assert path.stat().st_size < 64 << 10
        job_id = _as_client(conn, role, f"file://{path}")
        outcome = run_import(dsn, job_id, f"file://{folder}/store")
        row = job(conn, job_id)
        assert (outcome.status, row["status"]) == ("failed", "failed"), (fmt, row["error"])
        assert "longer than" in row["error"], row["error"]
    assert conn.execute("SELECT count(*) FROM people").fetchone() == (1,)



def test_file_localhost_is_the_same_file_in_normal_form(
        conn: Conn, tenant: tuple[str, Path]) -> None:
    """file://localhost/p is file:///p (RFC 8089): inside the folder, stored
    in normal form, so the worker's check sees the same path."""
    role, folder = tenant
    job_id = _as_client(conn, role, f"file://localhost{folder}/a.csv")
    assert job(conn, job_id)["payload"]["source"] == f"file://{folder}/a.csv"


# A CSV source is staged in a table of one text column per field besides the
# record's number: PostgreSQL's 1,600 columns of a table hold 1,599 fields.
CSV_FIELDS = 1599


def _wide(conn: Conn, dsn: str, role: str, folder: Path, fmt: str,
          width: int) -> dict[str, Any]:
    names = [f"f{i}" for i in range(width)]
    if fmt == "csv":
        data = (",".join(names) + "\n" + ",".join("1" for _ in names) + "\n").encode()
    else:
        data = (json.dumps(dict.fromkeys(names, 1)) + "\n").encode()
    (folder / f"wide.{fmt}").write_bytes(data)
    job_id = _as_client(conn, role, f"file://{folder}/wide.{fmt}",
                        options={"allow_unknown_fields": True})
    run_import(dsn, job_id, f"file://{folder}/store")
    return job(conn, job_id)


def test_a_csv_header_of_more_fields_than_an_import_stages_fails_naming_them(
        conn: Conn, dsn: str, tenant: tuple[str, Path]) -> None:
    """Fails on main: PostgreSQL's own 'tables can have at most 1600 columns'
    [54011], about a table the client never named, without a hint."""
    role, folder = tenant
    row = _wide(conn, dsn, role, folder, "csv", CSV_FIELDS + 1)
    assert row["status"] == "failed" and row["attempts"] == 1, row
    assert row["error"].startswith(
        f"the header row names {CSV_FIELDS + 1} fields, more than the {CSV_FIELDS} "
        "a CSV import reads [54011] (hint: "), row["error"]
    assert "JSON Lines" in row["error"], row["error"]
    assert _others(conn) == [(1, 2, "theirs", {"k": 1})]
    assert conn.execute("SELECT count(*) FROM people").fetchone() == (1,)


@pytest.mark.parametrize(("fmt", "width"), [("csv", CSV_FIELDS), ("jsonl", CSV_FIELDS + 1)])
def test_as_many_fields_as_an_import_reads_go_into_the_document(
        conn: Conn, dsn: str, tenant: tuple[str, Path], fmt: str, width: int) -> None:
    role, folder = tenant
    row = _wide(conn, dsn, role, folder, fmt, width)
    assert row["status"] == "succeeded", row["error"]
    doc = conn.execute("SELECT data FROM people WHERE tenant = 1").fetchone()
    assert doc is not None and len(doc[0]) == width
