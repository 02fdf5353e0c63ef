"""An adversarial pass on imports, as a low-privilege tenant of a shared
table: a pgjobs_client with the table rights docs/imports.md asks for,
confined by pgjobs.allowed_scopes to tenant 1, importing sources written to
land rows in tenant 2 or to change tenant 2's rows.

The scope column is named in every way a source can name it: twice in a CSV
header (either copy the other tenant's), in another case, quoted, with a
blank, behind a byte-order mark; twice in a JSON Lines record (JSON's
duplicate keys: the last counts everywhere, as jsonb reads it), spelt with
a \\u escape, as a string, a fraction, an exponent, after a null. A key of
the other tenant's row is sent with every on_duplicate mode, into a table
whose key is unique on its own too. Whatever the job's outcome (failed,
records rejected, rows inserted), no row outside tenant 1 is written or
changed, and every row the job inserted is tenant 1's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import allowed_folder, drop_client, people_client, run_import, submit_import
from tests.support.roles import acting_as

Conn = psycopg.Connection[Any]

# (format, source): each tries to write a row of tenant 2.
HOSTILE = {
    "csv: scope twice, other tenant last": ("csv", b"tenant,name,tenant\n1,a,2\n"),
    "csv: scope twice, other tenant first": ("csv", b"tenant,name,tenant\n2,a,1\n"),
    "csv: scope twice, first empty": ("csv", b"name,tenant,tenant\na,,2\n"),
    "csv: scope in another case": ("csv", b"Tenant,name\n2,a\n"),
    "csv: scope quoted": ("csv", b'"tenant",name\n2,a\n'),
    "csv: scope with a blank": ("csv", b"tenant ,name\n2,a\n"),
    "csv: byte-order mark": ("csv", b"\xef\xbb\xbftenant,name\n2,a\n"),
    "csv: other tenant": ("csv", b"tenant,name\n2,a\n"),
    "jsonl: scope twice, other tenant last": ("jsonl",
                                              b'{"tenant": 1, "name": "a", "tenant": 2}\n'),
    "jsonl: scope twice, own tenant last": ("jsonl",
                                            b'{"tenant": 2, "name": "a", "tenant": 1}\n'),
    "jsonl: scope after null": ("jsonl", b'{"tenant": null, "tenant": 2, "name": "a"}\n'),
    "jsonl: escaped name": ("jsonl", b'{"ten\\u0061nt": 2, "name": "a"}\n'),
    "jsonl: escaped duplicate": ("jsonl", b'{"tenant": 1, "ten\\u0061nt": 2, "name": "a"}\n'),
    "jsonl: string": ("jsonl", b'{"tenant": "2", "name": "a"}\n'),
    "jsonl: fraction": ("jsonl", b'{"tenant": 1.9, "name": "a"}\n'),
    "jsonl: exponent": ("jsonl", b'{"tenant": 2e0, "name": "a"}\n'),
    "jsonl: nested in the document": ("jsonl", b'{"data": {"tenant": 2}, "tenant": 2}\n'),
}

# The other tenant's row is id 1: its key, by every spelling, in every mode.
OTHER_KEY = {
    "csv": b"id,name\n1,mine\n01,mine\n",
    "jsonl": b'{"id": 1, "name": "mine"}\n{"id": "1", "name": "mine"}\n'
             b'{"id": 1, "id": 1, "name": "mine", "tenant": 1}\n',
}


@pytest.fixture
def tenant(conn: Conn, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = allowed_folder(conn, tmp_path)
    role = people_client(conn, "adv_import")
    conn.execute("INSERT INTO people (id, tenant, name, data)"
                 " VALUES (1, 2, 'theirs', '{\"k\": 1}')")
    conn.execute("ALTER TABLE people ADD CONSTRAINT people_id_unique UNIQUE (id)")
    conn.execute("SELECT setval(pg_get_serial_sequence('people', 'id'), 100)")
    yield role, folder
    drop_client(conn, role)


def _import(conn: Conn, dsn: str, role: str, folder: Path, name: str, data: bytes,
            options: dict[str, Any]) -> None:
    (folder / name).write_bytes(data)
    with acting_as(conn, role, scopes="1"):
        job_id = submit_import(conn, f"file://{folder}/{name}", "1", options)
    run_import(dsn, job_id, f"file://{folder}/store")


def _others(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, tenant, name, data, created_at FROM people"
                        " WHERE tenant <> 1 ORDER BY id").fetchall()


# update: the mode that writes most (the other modes' rows are the same
# inserts, and another tenant's key is tried in every mode below).
@pytest.mark.parametrize("on_duplicate", ["update"])
def test_a_hostile_source_never_writes_outside_its_scope(
        conn: Conn, dsn: str, tenant: tuple[str, Path], on_duplicate: str) -> None:
    role, folder = tenant
    before = _others(conn)
    failures = []
    for n, (case, (fmt, data)) in enumerate(sorted(HOSTILE.items())):
        _import(conn, dsn, role, folder, f"h{n}.src", data,
                {"format": fmt, "max_rejects": 10, "on_duplicate": on_duplicate})
        if _others(conn) != before:
            failures.append(f"{case}: {_others(conn)}")
            conn.execute("DELETE FROM people WHERE tenant <> 1 AND id <> 1")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("on_duplicate", ["error", "skip", "update"])
@pytest.mark.parametrize("unique", ["scope and key", "key alone"])
def test_another_tenants_key_never_reaches_its_row(
        conn: Conn, dsn: str, tenant: tuple[str, Path], on_duplicate: str,
        unique: str) -> None:
    """With the key unique on its own (the (scope, key) index a plain one), a
    duplicate is decided on the key alone, which another tenant's row holds."""
    role, folder = tenant
    if unique == "key alone":
        conn.execute("DROP INDEX people_tenant_id")
        conn.execute("CREATE INDEX people_tenant_id ON people (tenant, id)")
    before = _others(conn)
    for fmt, data in sorted(OTHER_KEY.items()):
        _import(conn, dsn, role, folder, f"k.{fmt}", data,
                {"format": fmt, "max_rejects": 10, "on_duplicate": on_duplicate})
        assert _others(conn) == before, fmt
    mine = conn.execute("SELECT id, tenant, name FROM people WHERE name = 'mine'").fetchall()
    assert all(row[1] == 1 for row in mine), mine
