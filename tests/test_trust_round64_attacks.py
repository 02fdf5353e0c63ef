"""Attacks on this round's merged changes (h177), the ones worth keeping.

pgjobs.canonical_scope (the dashboard's ?scope= filter) tried as a client:
on a table it may read its answer is the scope's canonical text or NULL for
every value (a domain's CHECK, a value the input function refuses, a huge
one), never an error; on a table it may not read (grants gone, a column
grant short of every column) or one pgjobs never saw, the scope unchanged,
so the answer tells nothing of the registry or the type.

An import's document-field twins are judged against the scope's rows from
before the job (pgjobs._scope_keys_at with p_before): the rows read are the
first 1,000 of those rows in key order, not the first 1,000 rows of any
date with the later ones then dropped, or rows written since the job began
(its own batches, another writer) with smaller keys hide every row from
before it and a twin imports as a new field.

storage.write_at, the one writer of a file:// object's bytes: a pwrite that
writes less than asked (its right) still leaves every byte once, and one
that writes nothing is an error, never a loop.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.poller import storage
from tests.support import (
    allowed_folder,
    build_target,
    job,
    one_record,
    run_import,
    scalar,
    submit_import,
)
from tests.support.roles import CONTROL_VERBS, drop_role, in_role, make_role
from tests.test_export_file_parts import SLICED, _write_through, upload

Conn = psycopg.Connection[Any]

CANONICAL = "SELECT pgjobs.canonical_scope(%s, %s)"

# scope type -> (spelling -> what canonical_scope answers a reader)
SCOPE_TYPES: dict[str, dict[str, str | None]] = {
    "positive": {"01": "1", "-1": None, "0": None, "99999999999": None, "x" * 100_000: None,
                 "": None, "\x01": None},
    "numeric(5,2)": {"1.5": "1.5", "1.50": "1.5", "1.005": None, "1e400": None, "NaN": "NaN",
                     "9" * 5000: None},
    "date": {"2030-01-02": "2030-01-02", "today": None, "2030-02-30": None,
             "infinity": "infinity"},
    "char(4)": {"ab": "ab", "ab  ": "ab", "abcde": None},
}


@pytest.fixture
def scoped(conn: Conn) -> Iterator[dict[str, Any]]:
    """One registered target per scope type of SCOPE_TYPES (a domain with a
    CHECK among them), a client that may read them all, one that may read
    none of them and one with a grant on some columns only."""
    conn.execute("CREATE DOMAIN positive AS integer CHECK (VALUE > 0)")
    targets = {}
    for i, scope_type in enumerate(SCOPE_TYPES):
        targets[scope_type] = build_target(
            conn, f"typed{i}", f"id bigint NOT NULL, scope {scope_type} NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now(), secret text")
    conn.execute("CREATE TABLE never_seen (id bigint, scope integer)")
    reader = make_role(conn, "rd", "GRANT pgjobs_client TO {role}",
                       *(f"GRANT SELECT ON {t} TO {{role}}" for t in targets.values()))
    outsider = make_role(conn, "out", "GRANT pgjobs_client TO {role}")
    partial = make_role(conn, "col", "GRANT pgjobs_client TO {role}",
                        *(f"GRANT SELECT (id, scope) ON {t} TO {{role}}"
                          for t in targets.values()))
    yield {"targets": targets, "reader": reader, "outsider": outsider, "partial": partial}
    for role in (reader, outsider, partial):
        drop_role(conn, role)


@pytest.mark.parametrize("allowed", [None, "1", "2"])
def test_canonical_scope_never_raises_and_tells_an_outsider_nothing(
        conn: Conn, scoped: dict[str, Any], allowed: str | None) -> None:
    wrong: dict[str, Any] = {}
    for scope_type, answers in SCOPE_TYPES.items():
        target = scoped["targets"][scope_type]
        for role in ("reader", "outsider", "partial"):
            with in_role(conn, scoped[role], scopes=allowed):
                for spelling, canonical in answers.items():
                    expected = canonical if role == "reader" else spelling
                    try:
                        got = scalar(conn, CANONICAL, (target, spelling))
                    except psycopg.Error as exc:
                        conn.rollback()
                        got = f"raised {exc.sqlstate}"
                    if got != expected:
                        wrong[f"{scope_type} {role} {spelling[:20]!r}"] = got
                    # A table pgjobs never saw answers alike for every caller.
                    if scalar(conn, CANONICAL, ("never_seen", spelling)) != spelling:
                        wrong[f"never_seen {role} {spelling[:20]!r}"] = "changed"
    assert wrong == {}


def test_canonical_scope_on_a_dropped_scope_column_is_null_for_a_reader_only(
        conn: Conn, scoped: dict[str, Any]) -> None:
    """A registration whose scope column is gone answers NULL, no 42703, and
    an outsider still gets the scope unchanged."""
    target = scoped["targets"]["positive"]
    conn.execute(f"ALTER TABLE {target} RENAME COLUMN scope TO tenant")
    with in_role(conn, scoped["reader"]):
        assert scalar(conn, CANONICAL, (target, "01")) is None
    with in_role(conn, scoped["outsider"]):
        assert scalar(conn, CANONICAL, (target, "01")) == "01"


@pytest.fixture
def later_rows(conn: Conn) -> str:
    """Target `later` (a document column `data`) whose scope 1 holds one row
    from long ago with field "status", at key 5000."""
    build_target(conn, "later", "id bigint GENERATED BY DEFAULT AS IDENTITY, "
                 "scope integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
                 "data jsonb NOT NULL DEFAULT '{}'", document="data")
    conn.execute("INSERT INTO later VALUES (5000, 1, now() - interval '1 day', "
                 "'{\"status\": \"keep\"}')")
    return "later"


@pytest.mark.parametrize("written_since", [10, 1000, 1500])
def test_rows_written_since_an_import_began_do_not_hide_the_rows_from_before_it(
        conn: Conn, dsn: str, tmp_path: Path, later_rows: str, written_since: int) -> None:
    """Rows of the scope dated after the job's cutoff (another writer's, or
    the import's own earlier batches) with smaller keys than the rows from
    before it: the twin test still reads the rows from before, so "Status"
    is still the twin of their "status" and fails the job."""
    folder = allowed_folder(conn, tmp_path)
    source = one_record(folder, "jsonl", {"Status": "new"})
    job_id = submit_import(conn, f"file://{source}", "1", {"format": "jsonl"},
                           target=later_rows)
    conn.execute("INSERT INTO later (id, scope, created_at, data) "
                 "SELECT g, 1, now() + interval '1 hour', '{\"other\": 1}' "
                 "FROM generate_series(1, %s) g", (written_since,))
    run_import(dsn, job_id, f"file://{folder}/store")
    row = job(conn, job_id)
    assert row["status"] == "failed" and 'document field "status"' in row["error"], row


def test_the_keys_read_are_the_first_thousand_of_the_rows_from_before(
        conn: Conn, later_rows: str) -> None:
    """pgjobs._scope_keys_at itself, the read behind every twin and guess:
    with p_before, rows after it never take the places of rows from before."""
    conn.execute("INSERT INTO later (id, scope, created_at, data) "
                 "SELECT g, 1, now() + interval '1 hour', '{\"other\": 1}' "
                 "FROM generate_series(1, 1200) g")
    keys = scalar(conn, "SELECT pgjobs._scope_keys_at(r, '1', '{}', now()) "
                        "FROM pgjobs.target_registry r WHERE r.target = 'later'::regclass")
    assert keys == ["status"]


@pytest.mark.parametrize("entry", ["part", "create", "write", "inherit"])
def test_a_short_pwrite_leaves_every_byte_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    """pwrite may write less than it is handed: each call here writes at
    most 1,000 bytes, and the object is still the bytes, whole and once."""
    real = os.pwrite
    monkeypatch.setattr(storage.os, "pwrite",
                        lambda fd, data, offset: real(fd, bytes(data[:1000]), offset))
    if entry == "part":
        first = upload(tmp_path)
        first.write_part(bytearray(SLICED))
        first.finish()
        assert (tmp_path / "items" / "1" / "7.csv").read_bytes() == SLICED
    else:
        assert _write_through(entry, tmp_path) == SLICED


@pytest.mark.parametrize("entry", ["part", "create", "write", "inherit"])
def test_a_pwrite_that_writes_nothing_is_an_error_not_a_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    """A pwrite that returns 0 for bytes it was handed will not write them on
    the next call either: write_at raises (ENOSPC, as a full disk), the
    export fails or retries; it must not spin for ever (the fake gives up
    after 100 calls, which the writer must not reach)."""
    calls = []

    def nothing(fd: int, data: Any, offset: int) -> int:
        calls.append(len(data))
        if len(calls) > 100:
            raise RuntimeError("write_at spun on a pwrite that wrote nothing")
        return 0

    if entry == "inherit":  # the first owner's prefix is written for real
        first = upload(tmp_path)
        digests = [[len(SLICED), first.write_part(bytearray(SLICED))]]
        location = storage.parse(f"file://{tmp_path}/items/1/7.csv")
        monkeypatch.setattr(storage.os, "pwrite", nothing)
        with pytest.raises((OSError, storage.StorageError)) as raised:
            storage.resume_upload(location, "", "b2-y", first.state(), part_size=1024,
                                  digests=digests).finish()
    else:
        monkeypatch.setattr(storage.os, "pwrite", nothing)
        with pytest.raises((OSError, storage.StorageError)) as raised:
            if entry == "part":
                upload(tmp_path).write_part(bytearray(SLICED))
            else:
                _write_through(entry, tmp_path)
    assert "spun" not in str(raised.value)
    assert len(calls) < 100


def test_write_at_raises_enospc_on_a_pwrite_that_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def nothing(*_: Any) -> int:
        calls.append(1)
        if len(calls) > 100:
            raise RuntimeError("write_at spun on a pwrite that wrote nothing")
        return 0

    monkeypatch.setattr(storage.os, "pwrite", nothing)
    with open(tmp_path / "f", "wb") as f, pytest.raises(OSError) as raised:
        storage.write_at(f.fileno(), b"abc", 0)
    assert raised.value.errno == errno.ENOSPC


VERB_STATE = {"cancel": "queued", "pause": "queued", "resume": "paused", "retry": "canceled",
              "add_items": "queued"}


@pytest.mark.parametrize("verb", sorted(CONTROL_VERBS))
@pytest.mark.parametrize("how", ["renamed_into_the_name", "created_under_the_name"])
def test_a_role_near_the_submitter_never_gains_its_job(
        conn: Conn, verb: str, how: str) -> None:
    """The by-oid rule (pgjobs._is_submitter, migration 0180): a role
    renamed into the name the submitter had at submit once that one took
    another, or created under it, may read the target but neither controls
    the job nor counts as its submitter; the job stays as it was. (A member
    of the submitter inherits its privilege on the target, and whoever
    could have submitted a job may control it: pgjobs._controlled_job.)"""
    build_target(conn, "near", "id bigint NOT NULL, scope integer NOT NULL, "
                 "created_at timestamptz NOT NULL DEFAULT now()")
    submitter = make_role(conn, "sub", "GRANT pgjobs_client TO {role}",
                          "GRANT SELECT, INSERT, UPDATE, DELETE ON near TO {role}")
    other = make_role(conn, "oth", "GRANT pgjobs_client TO {role}",
                      "GRANT SELECT ON near TO {role}")
    try:
        with in_role(conn, submitter):
            job_id = int(scalar(conn, "SELECT pgjobs.submit_items('resize', 'near', '1', "
                                      "'[{\"a\": 1}]')"))
        if VERB_STATE[verb] == "paused":
            scalar(conn, "SELECT pgjobs.pause(%s)", (job_id,))
        elif VERB_STATE[verb] == "canceled":
            scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,))
        actor = other
        if how == "created_under_the_name":
            conn.execute(f"ALTER ROLE {submitter} RENAME TO {submitter}_was")
            conn.execute(f"CREATE ROLE {submitter} NOLOGIN IN ROLE pgjobs_client")
            conn.execute(f"GRANT SELECT ON near TO {submitter}")
            drop_role(conn, other)
            actor, other, submitter = submitter, submitter, f"{submitter}_was"
        else:
            conn.execute(f"ALTER ROLE {submitter} RENAME TO {submitter}_was")
            conn.execute(f"ALTER ROLE {other} RENAME TO {submitter}")
            actor, other, submitter = submitter, submitter, f"{submitter}_was"
        before = conn.execute("SELECT status, total FROM pgjobs.jobs WHERE id = %s",
                              (job_id,)).fetchone()
        assert not scalar(conn, "SELECT pgjobs._is_submitter(%s, submitted_by, "
                                "submitted_by_oid) FROM pgjobs.jobs WHERE id = %s",
                          (actor, job_id))
        with in_role(conn, actor), pytest.raises(psycopg.errors.InsufficientPrivilege):
            scalar(conn, CONTROL_VERBS[verb], (job_id,))
        conn.rollback()
        after = conn.execute("SELECT status, total FROM pgjobs.jobs WHERE id = %s",
                             (job_id,)).fetchone()
        assert after == before
    finally:
        conn.rollback()
        conn.execute("RESET ROLE")
        drop_role(conn, other)
        drop_role(conn, submitter)


def test_canonical_scope_reads_no_row_and_knows_only_registered_tables(
        conn: Conn, scoped: dict[str, Any]) -> None:
    """Row-level security that hides every row changes nothing (no row is
    read); a view over a registered target, and a table the reader may read
    that pgjobs never saw, answer the scope unchanged."""
    target = scoped["targets"]["positive"]
    conn.execute(f"CREATE VIEW over_typed AS SELECT * FROM {target}")
    conn.execute(f"GRANT SELECT ON over_typed, never_seen TO {scoped['reader']}")
    conn.execute(f"ALTER TABLE {target} ENABLE ROW LEVEL SECURITY")
    conn.execute(f"ALTER TABLE {target} FORCE ROW LEVEL SECURITY")
    conn.execute(f"CREATE POLICY nothing ON {target} USING (false)")
    with in_role(conn, scoped["reader"]):
        assert scalar(conn, CANONICAL, (target, " 01")) == "1"
        assert scalar(conn, CANONICAL, (target, "-1")) is None
        for table in ("over_typed", "never_seen"):
            assert scalar(conn, CANONICAL, (table, " 01")) == " 01"
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            scalar(conn, "SELECT pgjobs.canonical_scope(%s, NULL)", (target,))
