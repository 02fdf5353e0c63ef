"""Round 39 adversarial pass over "jobs must not lose or leak": a job that says
``succeeded`` did exactly what it says (h10).

1. A local import source rewritten in place **with the same size** while one
   attempt reads it: the reader checked only the inode and, at the end, the
   size, so the import read old bytes, then new ones, and succeeded with rows
   of two different files (an object store's ranged reads are pinned to the
   ETag the import began with; a local file now is to its modification time,
   as the checkpoint's version between attempts already was).
2. A JSONL batch whose records name several sets of keys, one key spelt two
   ways (a timestamptz in two zones, a date, numeric or interval in two
   spellings): the two were taken for two keys and the later line's set could
   go in first (see below; bigint and uuid spellings held, and stay checked).
3. The same under a case- or accent-insensitive collation of a text key.
4. Records naming no key, whose key the table computes (a generated key, a
   BEFORE INSERT trigger, a constant default): taken for new keys each.
5. Records of different keys that meet on another unique index or exclusion
   constraint (an email unique per tenant): their sets went in by first
   appearance, the later line landed and the earlier was rejected.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from pgjobs.poller.importer import Importer
from tests.support import (
    allowed_folder,
    build_target,
    claim_import,
    job,
    make_people,
    submit_import,
)

Conn = psycopg.Connection[Any]


@pytest.fixture
def src(conn: Conn, tmp_path: Path) -> Path:
    make_people(conn)
    return allowed_folder(conn, tmp_path)


def _names(conn: Conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM people WHERE tenant = 1 ORDER BY id")]


def _rewrite_in_place(path: Path, data: bytes, how: str) -> None:
    """Put ``data`` (as long as the file) in place of the file's bytes, the inode
    kept; its modification time moved on by a second (a real rewrite's clock
    tick, without waiting for one)."""
    before = os.stat(path)
    if how == "truncate":  # cp onto it: truncated, then written
        with path.open("wb") as f:
            f.write(data)
    else:  # written over (dd conv=notrunc, an editor saving in place)
        with path.open("r+b") as f:
            f.write(data)
    assert os.stat(path).st_ino == before.st_ino and os.stat(path).st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("how", ["truncate", "overwrite"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "csv.gz"])
def test_a_local_source_rewritten_in_place_at_the_same_size_fails_the_job(
        conn: Conn, dsn: str, src: Path, monkeypatch: pytest.MonkeyPatch, how: str,
        fmt: str) -> None:
    """Same size, same inode, other bytes, mid-attempt: the job must not succeed
    with rows of two files."""
    monkeypatch.setattr(storage, "READ_BLOCK", 16 * 1024)

    def source(tag: str) -> bytes:
        if fmt.startswith("csv"):
            body = b"name,age\n" + b"".join(f"{tag}{i:05},{i}\n".encode() for i in range(20000))
        else:
            body = b"".join(f'{{"name": "{tag}{i:05}", "age": {i}}}\n'.encode()
                            for i in range(20000))
        # gzip stored (level 0): two bodies of one length, two streams of one size.
        return gzip.compress(body, compresslevel=0, mtime=0) if fmt.endswith(".gz") else body

    old, new = source("old"), source("new")
    assert len(new) == len(old)
    path = src / f"people.{fmt}"
    path.write_bytes(old)

    def changed(records: int, done: int, total: int | None) -> None:
        if records and not getattr(changed, "once", False):
            changed.once = True  # type: ignore[attr-defined]
            _rewrite_in_place(path, new, how)

    options = {"format": "jsonl"} if fmt == "jsonl" else ({"gzip": True} if fmt.endswith(".gz")
                                                          else None)
    job_id = submit_import(conn, f"file://{path}", "1", options)
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{src}/store", batch_bytes=4096,
             on_progress=changed).run()
    row = job(conn, job_id)
    names = _names(conn)
    assert row["status"] == "failed", (row["result"], len(names),
                                       sum(n.startswith("new") for n in names))
    assert "changed while it was read" in row["error"], row["error"]
    assert not any(n.startswith("new") for n in names)


# --- 2. a JSONL key spelt two ways, in two sets of keys ----------------------------
#
# A JSONL batch goes in one INSERT per set of keys; records of one key that
# name different sets go in alone, in line order. "One key" was judged on the
# key's text made loose (numbers by value, other text without case, spaces,
# braces or hyphens): two spellings of one timestamptz, date, numeric or
# interval value were two keys, their sets went in in the order each set was
# first met, and the row ended as an earlier line said (update), kept a later
# record (skip) or rejected the wrong line (error), the job `succeeded`.

KEY_SPELLINGS = [
    ("timestamptz", "2024-01-01 01:00:00+01", "2024-01-01T00:00:00Z", "2023-06-01 00:00:00Z"),
    ("date", "2024-01-01", "2024-1-1", "2023-06-01"),
    ("numeric", "1000", "1e3", "7"),
    ("interval", "1 day", "24:00:00", "2 days"),  # equal as intervals (one day = 24 h)
    ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}",
     "00000000-0000-0000-0000-000000000001"),
    ("bigint", "1000", " +1000", "7"),
]


@pytest.mark.parametrize("mode", ["update", "skip", "error"])
@pytest.mark.parametrize(("key_type", "first", "second", "other"), KEY_SPELLINGS,
                         ids=[k[0] for k in KEY_SPELLINGS])
def test_one_key_spelt_two_ways_in_two_sets_goes_in_line_order(
        conn: Conn, dsn: str, tmp_path: Path, mode: str, key_type: str, first: str,
        second: str, other: str) -> None:
    build_target(conn, "keyed", f"id {key_type} NOT NULL, scope integer NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now(), name text, age integer",
                 index="unique")
    folder = allowed_folder(conn, tmp_path)
    records = [{"id": other, "name": "x", "age": 1},    # set {age, id, name} first met
               {"id": first, "name": "b"},              # set {id, name}
               {"id": second, "name": "c", "age": 3}]   # the same key: line 3 is last
    path = folder / "keys.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    job_id = submit_import(conn, f"file://{path}", "1",
                           {"format": "jsonl", "on_duplicate": mode, "max_rejects": 5},
                           target="keyed")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    got = conn.execute("SELECT name, age FROM keyed WHERE id = %s::" + key_type,
                       (first,)).fetchall()
    want = {"update": [("c", 3)], "skip": [("b", None)], "error": [("b", None)]}[mode]
    assert got == want, (mode, got)
    result = row["result"]
    assert (result["inserted"], result["updated"], result["skipped"], result["rejected"]) == {
        "update": (2, 1, 0, 0), "skip": (2, 0, 1, 0), "error": (2, 0, 0, 1)}[mode], result
    lines = [r[0] for r in conn.execute(
        "SELECT line FROM pgjobs.import_rejects WHERE job_id = %s ORDER BY line", (job_id,))]
    assert lines == ([3] if mode == "error" else [])


# --- 3. a text key equal under its nondeterministic collation ------------------------
#
# A text key is compared without case, spaces, braces or hyphens (lower()):
# under a case- or accent-insensitive collation other spellings are one key
# too (a fullwidth 'ＡＢＣ' and 'abc', halfwidth kana and full ones at level 2,
# 'Élan' and 'elan' at level 1), which lower() keeps apart.

COLLATED_SPELLINGS = [
    ("und-u-ks-level2", "カタカナ", "ｶﾀｶﾅ"),  # halfwidth kana: a tertiary difference
    ("und-u-ks-level2", "abc", "ＡＢＣ"),  # fullwidth: a tertiary difference
    ("und-u-ks-level1", "elan", "Élan"),
]


@pytest.mark.parametrize("mode", ["update", "skip", "error"])
@pytest.mark.parametrize(("locale", "first", "second"), COLLATED_SPELLINGS,
                         ids=["halfwidth", "fullwidth", "accent"])
def test_one_text_key_equal_under_its_collation_goes_in_line_order(
        conn: Conn, dsn: str, tmp_path: Path, mode: str, locale: str, first: str,
        second: str) -> None:
    if not conn.execute("SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'"
                        ).fetchone()[0]:  # type: ignore[index]
        pytest.skip("no ICU collations in this PostgreSQL")
    conn.execute(f"CREATE COLLATION loose (provider = icu, locale = '{locale}', "
                 "deterministic = false)")
    build_target(conn, "keyed", "id text COLLATE loose NOT NULL, scope integer NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now(), name text, age integer",
                 index="unique")
    assert conn.execute("SELECT %s::text COLLATE loose = %s::text", (first, second)
                        ).fetchone() == (True,)
    folder = allowed_folder(conn, tmp_path)
    records = [{"id": "zzz", "name": "x", "age": 1},
               {"id": first, "name": "b"},
               {"id": second, "name": "c", "age": 3}]
    path = folder / "keys.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    job_id = submit_import(conn, f"file://{path}", "1",
                           {"format": "jsonl", "on_duplicate": mode, "max_rejects": 5},
                           target="keyed")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    got = conn.execute("SELECT name, age FROM keyed WHERE id = %s", (first,)).fetchall()
    want = {"update": [("c", 3)], "skip": [("b", None)], "error": [("b", None)]}[mode]
    assert got == want, (mode, got)
    lines = [r[0] for r in conn.execute(
        "SELECT line FROM pgjobs.import_rejects WHERE job_id = %s ORDER BY line", (job_id,))]
    assert lines == ([3] if mode == "error" else [])


# --- 4. records that name no key, whose key the table computes ------------------------
#
# Records without the key were taken to get new keys, none meeting another:
# true of an identity or a sequence, not of a key generated from other
# columns (the hint of register_target suggests lower(name)), nor of one a
# BEFORE INSERT trigger computes. Two such records of one key in two sets of
# keys went in in the order each set was first met.

KEY_MAKERS = {
    "generated": ("id text NOT NULL GENERATED ALWAYS AS (lower(email)) STORED", None),
    "trigger": ("id text NOT NULL", """
        CREATE FUNCTION keyed_id() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.id := lower(NEW.email); RETURN NEW; END $$;
        CREATE TRIGGER keyed_id BEFORE INSERT ON keyed FOR EACH ROW EXECUTE FUNCTION keyed_id();
        """),
    "default": ("id text NOT NULL DEFAULT 'one'", None),
}


# (on_duplicate update refuses a source naming what the key is generated from:
# every record is rejected, as documented.)
@pytest.mark.parametrize(("maker", "mode"), [
    (maker, mode) for maker in KEY_MAKERS for mode in ("update", "skip", "error")
    if (maker, mode) != ("generated", "update")])
def test_records_whose_key_the_table_computes_go_in_line_order(
        conn: Conn, dsn: str, tmp_path: Path, mode: str, maker: str) -> None:
    column, extra = KEY_MAKERS[maker]
    build_target(conn, "keyed", f"{column}, email text, scope integer NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now(), name text, age integer",
                 index="unique")
    if extra:
        conn.execute(extra)
    folder = allowed_folder(conn, tmp_path)
    # (A constant default: all three records are one key.)
    records = [{"email": "zz@x", "name": "x", "age": 1},
               {"email": "A@x", "name": "b"},
               {"email": "a@x", "name": "c", "age": 3}]
    path = folder / "keys.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    job_id = submit_import(conn, f"file://{path}", "1",
                           {"format": "jsonl", "on_duplicate": mode, "max_rejects": 5},
                           target="keyed")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    key = "one" if maker == "default" else "a@x"
    got = conn.execute("SELECT name, age FROM keyed WHERE id = %s", (key,)).fetchall()
    first = ("x", 1) if maker == "default" else ("b", None)
    want = {"update": [("c", 3)], "skip": [first], "error": [first]}[mode]
    assert got == want, (mode, got)
    lines = [r[0] for r in conn.execute(
        "SELECT line FROM pgjobs.import_rejects WHERE job_id = %s ORDER BY line", (job_id,))]
    assert lines == (([2, 3] if maker == "default" else [3]) if mode == "error" else [])


# --- 5. records of other keys that meet on another unique index -----------------------
#
# Records of two keys may still meet: on another unique index or exclusion
# constraint of the target (an email unique per tenant). Their sets went in
# in the order each was first met: the later line landed and the earlier one
# was rejected (or, with update and skip, the wrong record kept).

MEETINGS = {
    "unique-index": "CREATE UNIQUE INDEX keyed_email ON keyed (scope, email)",
    "unique-constraint": "ALTER TABLE keyed ADD CONSTRAINT keyed_email UNIQUE (email)",
    "expression-index": "CREATE UNIQUE INDEX keyed_email ON keyed (lower(email))",
    "partial-index": "CREATE UNIQUE INDEX keyed_email ON keyed (email) WHERE email <> ''",
    # An exclusion constraint (a hash one needs no btree_gist): 23P01, not 23505.
    "exclusion-constraint": "ALTER TABLE keyed ADD CONSTRAINT keyed_email "
                            "EXCLUDE USING hash (email WITH =)",
}


@pytest.mark.parametrize("mode", ["update", "skip", "error"])
@pytest.mark.parametrize("meeting", list(MEETINGS))
def test_records_that_meet_on_another_unique_index_go_in_line_order(
        conn: Conn, dsn: str, tmp_path: Path, mode: str, meeting: str) -> None:
    build_target(conn, "keyed", "id bigint NOT NULL, email text, scope integer NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now(), name text, age integer",
                 index="unique")
    conn.execute(MEETINGS[meeting])
    folder = allowed_folder(conn, tmp_path)
    records = [{"id": 1, "email": "x@x", "name": "x", "age": 1},
               {"id": 2, "email": "e@x"},
               {"id": 3, "email": "e@x", "name": "c", "age": 3}]
    path = folder / "keys.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    job_id = submit_import(conn, f"file://{path}", "1",
                           {"format": "jsonl", "on_duplicate": mode, "max_rejects": 5},
                           target="keyed")
    Importer(dsn, job_id, claim_import(dsn, job_id), f"file://{folder}/store").run()
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    got = conn.execute("SELECT id FROM keyed WHERE email = 'e@x'").fetchall()
    assert got == [(2,)], (mode, got)  # line 2 landed first; line 3 meets it
    lines = [r[0] for r in conn.execute(
        "SELECT line FROM pgjobs.import_rejects WHERE job_id = %s ORDER BY line", (job_id,))]
    assert lines == [3], (mode, lines)
    assert row["result"]["inserted"] == 2 and row["result"]["rejected"] == 1, row["result"]
