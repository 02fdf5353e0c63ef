"""Regression tests for four defects of the trust work (issue 9, review x1):
spoofed NOTIFY payloads and `pgjobs watch`, the cost of `$contains`, canonical
scope text of bytea and of domains, and exports written in pinned settings."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests import test_trust_scope as scope_tests
from tests.support import (
    LONG_LEASE,
    build_target,
    checkpoint_parts,
    claim,
    expire_leases,
    job,
    make_target,
    object_bytes,
    run_export,
    scalar,
    start_worker,
    submit,
    submit_export,
    wait_for,
    who,
)
from tests.support.cli import pgjobs_command
from tests.test_cli import wait_for_backend
from tests.test_trust_scope import make_table

Conn = psycopg.Connection[Any]

# --- 4. exports are written in pinned settings ----------------------------------

HOSTILE = [
    "-c TimeZone=Asia/Kathmandu -c DateStyle=SQL,DMY -c extra_float_digits=0 "
    "-c IntervalStyle=sql_standard -c bytea_output=escape",
    "-c TimeZone=America/St_Johns -c DateStyle=German -c extra_float_digits=-15 "
    "-c IntervalStyle=iso_8601 -c bytea_output=escape -c standard_conforming_strings=off",
]


def _hostile(dsn: str, which: int) -> str:
    return make_conninfo(dsn, options=HOSTILE[which])


def _make_typed(conn: Conn, rows: int = 400) -> None:
    """Table `typed`: every type whose text depends on a session setting."""
    build_target(conn, "typed", """
            id bigint PRIMARY KEY,
            tenant integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
            doc jsonb NOT NULL DEFAULT '{}',
            ts timestamptz, tsl timestamp, d date, tm timetz, iv interval,
            f float8, r real, b bytea, arr float8[], note text""",
                 scope="tenant", document="doc", index_name="typed_tenant_id_idx")
    conn.execute("""
        INSERT INTO typed (id, tenant, ts, tsl, d, tm, iv, f, r, b, arr, note)
        SELECT i, 1, timestamptz '2024-02-29 23:45:01.5+00' + i * interval '7 hours 3 min',
               timestamp '2001-12-31 10:00' + i * interval '1 day',
               date '1999-01-02' + i, timetz '10:11:12+05:30',
               i * interval '1 day 3 hours 4.5 seconds' - interval '2 months',
               1.0 / (i + 3), (i / 7.0)::real, decode(lpad(to_hex(i), 8, '0') || '5c00ff', 'hex'),
               ARRAY[pi() * i, 1e-300], 'back\\slash ' || i
          FROM generate_series(1, %s) i""", (rows,))


def _export(dsn: str, conn: Conn, options: dict[str, Any], destination: str) -> bytes:
    job_id = submit_export(conn, "1", {}, options, target="typed")
    outcome = run_export(dsn, job_id, destination)
    assert outcome.result is not None
    return object_bytes(outcome.result)


def test_export_under_hostile_settings_equals_plain_export(
        conn: Conn, dsn: str, local_dir: str) -> None:
    _make_typed(conn)
    for options in ({}, {"format": "jsonl"}):
        plain = _export(dsn, conn, options, local_dir)
        assert b"+00" in plain and b"\\x" in plain  # UTC, hex
        for which in range(len(HOSTILE)):
            assert _export(_hostile(dsn, which), conn, options, local_dir) == plain, (
                options, HOSTILE[which])


def test_export_resumed_under_other_hostile_settings_is_byte_identical(
        conn: Conn, dsn: str, local_dir: str) -> None:
    _make_typed(conn, rows=600)
    many_parts = {"chunk_rows": 5, "part_size": 1024}
    expected = _export(dsn, conn, many_parts, local_dir)
    job_id = submit_export(conn, "1", {}, many_parts, target="typed")
    first = start_worker(_hostile(dsn, 0), local_dir, "--once", "--lease", LONG_LEASE,
                         delays="part=0.05")
    try:
        wait_for(lambda: checkpoint_parts(conn, job_id) >= 4, what="some parts")
    finally:
        first.kill()
        first.communicate(timeout=10)
    assert job(conn, job_id)["status"] == "running"
    expire_leases(conn, job_id)
    second = start_worker(_hostile(dsn, 1), local_dir, "--once")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    row = job(conn, job_id)
    assert row["status"] == "succeeded", row["error"]
    assert len(row["checkpoint"]["history"]) >= 2  # resumed, not restarted
    assert object_bytes(row["result"]) == expected


# --- 2. the cost of $contains ---------------------------------------------------


def _make_texts(conn: Conn, rows: int = 0) -> None:
    build_target(conn, "texts", """id bigint PRIMARY KEY, tenant integer NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                 doc jsonb NOT NULL DEFAULT '{}', body text""",
                 scope="tenant", document="doc", index_name="texts_tenant_id_idx")
    if rows:
        conn.execute("""INSERT INTO texts (id, tenant, doc, body)
                        SELECT i, 1, jsonb_build_object('s', repeat('a', 4000)), repeat('a', 4000)
                          FROM generate_series(1, %s) i""", (rows,))


def _compile(conn: Conn, filter_: dict[str, Any]) -> str:
    row = conn.execute("SELECT pgjobs.compile_filter('texts', %s::jsonb)",
                       (json.dumps(filter_),)).fetchone()
    assert row is not None
    return str(row[0])


def _contains(n: int, size: int, where: str = "and") -> dict[str, Any]:
    """n $contains of size bytes each, spread over a column, a document field and
    nested logical operators."""
    clauses: list[dict[str, Any]] = []
    for i in range(n):
        pattern = (f"{i:04d}" + "é" * size)[:size]
        while len(pattern.encode()) > size:
            pattern = pattern[:-1]
        pattern += "x" * (size - len(pattern.encode()))
        field = "body" if i % 2 else "s"
        clause: dict[str, Any] = {field: {"$contains": pattern}}
        if i % 3 == 0:
            clause = {"$not": clause}
        elif i % 3 == 1:
            clause = {field: {"$not": {"$contains": pattern}}}
        clauses.append(clause)
    return {f"${where}": clauses}


@pytest.mark.parametrize("where", ["and", "or"])
def test_contains_operators_are_capped_at_32(conn: Conn, where: str) -> None:
    _make_texts(conn)
    assert _compile(conn, _contains(32, 8, where)).count("OPERATOR(pg_catalog.~~*)") == 32
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        _compile(conn, _contains(33, 1, where))
    assert "33 $contains" in str(err.value) and err.value.diag.message_hint


def test_contains_operand_bytes_are_capped_at_256(conn: Conn) -> None:
    _make_texts(conn)
    _compile(conn, _contains(2, 128))
    _compile(conn, _contains(32, 8))
    _compile(conn, {"body": {"$contains": "é" * 128}})  # 256 bytes, 128 characters
    for too_big in (_contains(2, 129), _contains(32, 9), {"body": {"$contains": "é" * 128 + "x"}},
                    {"$or": [{"s": {"$contains": "x" * 200}},
                             {"$and": [{"body": {"$contains": "y" * 57}}]}]}):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
            _compile(conn, too_big)
        assert "bytes" in str(err.value) and err.value.diag.message_hint


def test_submit_and_visible_count_refuse_over_the_cap(conn: Conn) -> None:
    _make_texts(conn, rows=300)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.visible_count('texts', '1', %s::jsonb)",
                     (json.dumps(_contains(999, 4)),))
    # At the cap, on 4 kB texts whose every pattern nearly matches: it runs.
    # At the cap, on 4 kB texts that every pattern nearly matches (ILIKE's worst
    # case: its cost is the text's length times the pattern's): it runs.
    for worst in ({"$or": [{"body": {"$contains": "a" * 7 + "b"}} for _ in range(16)]
                   + [{"s": {"$contains": "a" * 7 + "b"}} for _ in range(16)]},
                  {"s": {"$contains": "a" * 255 + "b"}},
                  {"body": {"$contains": "a" * 255 + "b"}}):
        conn.execute("SELECT pgjobs.visible_count('texts', '1', %s::jsonb)",
                     (json.dumps(worst),)).fetchone()


# --- 3. canonical scope text of bytea and of domains ----------------------------

DOMAINS = """
    CREATE DOMAIN num_d AS numeric;
    CREATE DOMAIN num_dd AS num_d;
    CREATE DOMAIN num62_d AS numeric(6,2);
    CREATE DOMAIN interval_d AS interval;
    CREATE DOMAIN bpchar_d AS bpchar;
    CREATE DOMAIN char4_d AS character(4);
    CREATE DOMAIN float_d AS double precision;
    CREATE DOMAIN bytea_d AS bytea;
"""
BYTEA = ["\\x01ff", "\\001\\377", "\\x01FF", "\\x01 ff", "\x01\\377"]
DOMAIN_SPELLINGS: list[tuple[str, list[str], str]] = [
    ("bytea", BYTEA, "\\x01fe"),
    ("bytea_d", BYTEA, "\\x01fe"),
    ("num_d", ["1.5", "1.50", "01.5", "+1.500", "15e-1"], "1.51"),
    ("num_dd", ["1.5", "1.50", "01.5", "+1.500", "15e-1"], "1.51"),
    ("num62_d", ["1.5", "1.50", "01.5", "+1.500"], "1.51"),
    ("interval_d", ["1 day", "24 hours", "1440 minutes", "P1D"], "25 hours"),
    ("bpchar_d", ["ab", "ab ", "ab   "], "abc"),
    ("char4_d", ["ab", "ab ", "ab  "], "abc"),
    ("float_d", ["0", "-0", "0.0", "-0e5"], "1"),
]
DOMAIN_IDS = [t for t, _, _ in DOMAIN_SPELLINGS]
# Sessions whose settings change how values print.
SESSIONS = [
    {},
    {"bytea_output": "escape", "extra_float_digits": "0", "IntervalStyle": "sql_standard"},
    {"bytea_output": "escape", "IntervalStyle": "iso_8601", "DateStyle": "German",
     "TimeZone": "Asia/Kathmandu", "extra_float_digits": "-15"},
]


@pytest.fixture
def domains(conn: Conn) -> None:
    conn.execute(DOMAINS)


def _session(make_conn: Any, settings: dict[str, str]) -> Conn:
    other: Conn = make_conn()
    for name, value in settings.items():
        other.execute("SELECT set_config(%s, %s, false)", (name, value))
    return other


@pytest.mark.parametrize(("scope_type", "spellings", "other"), DOMAIN_SPELLINGS, ids=DOMAIN_IDS)
def test_bytea_and_domain_scopes_mask_one_tenant_in_every_spelling_and_session(
        conn: Conn, make_conn: Any, domains: None, scope_type: str, spellings: list[str],
        other: str) -> None:
    make_table(conn, scope_type, spellings[0], other)
    sessions = [_session(make_conn, settings) for settings in SESSIONS]
    stored = set()
    for session in sessions:
        for spelling in spellings:
            job_id = scalar(session, "SELECT pgjobs.submit_delete('t', %s)", (spelling,))
            stored.add(scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (job_id,)))
            # The job masks the tenant in every spelling, read from every session.
            for check in sessions:
                for seen in spellings:
                    assert scalar(check, "SELECT pgjobs.visible_count('t', %s)", (seen,)) == 0
                assert scalar(check, "SELECT pgjobs.visible_count('t', %s)", (other,)) == 4
            assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
    assert len(stored) == 1, stored


@pytest.mark.parametrize(("scope_type", "spellings", "other"), DOMAIN_SPELLINGS, ids=DOMAIN_IDS)
def test_bytea_and_domain_scopes_are_one_tenant_for_on_conflict_and_the_gate(
        conn: Conn, make_conn: Any, domains: None, scope_type: str, spellings: list[str],
        other: str) -> None:
    make_table(conn, scope_type, spellings[0], other)
    scalar(conn, "SELECT pgjobs.submit_delete('t', %s)", (spellings[0],))
    for settings in SESSIONS:
        session = _session(make_conn, settings)
        for spelling in spellings:
            with pytest.raises(psycopg.errors.ObjectInUse):
                session.execute("""SELECT pgjobs.submit_backfill('t', %s, '{}', '{"n": 1}',
                                                                 '{"on_conflict": "reject"}')""",
                                (spelling,))
        session.close()
    scalar(conn, """SELECT pgjobs.submit_delete('t', %s, '{}', '{}',
                                                '{"on_conflict": "reject"}')""", (other,))


@pytest.mark.parametrize(("scope_type", "spellings", "other"), DOMAIN_SPELLINGS, ids=DOMAIN_IDS)
def test_bytea_and_domain_scopes_allowed_scopes_see_one_tenant(
        conn: Conn, domains: None, scope_type: str, spellings: list[str], other: str) -> None:
    scope_tests.test_allowed_scopes_and_cancel_see_one_tenant(conn, scope_type, spellings, other)


@pytest.mark.parametrize("money_type", ["money", "money_d"])
@pytest.mark.parametrize("role", ["scope", "key"])
def test_money_scopes_and_keys_are_refused_at_registration(conn: Conn, money_type: str,
                                                           role: str) -> None:
    """A key's text is the cursor a runner stores and another reads back, as a
    scope's is the tenant's one spelling; money's follows lc_monetary."""
    conn.execute("CREATE DOMAIN money_d AS money")
    key, scope = (money_type, "int") if role == "key" else ("bigint", money_type)
    conn.execute(f"""CREATE TABLE m (id {key} NOT NULL, s {scope} NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (s, id))""")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        conn.execute("SELECT pgjobs.register_target('m', 'id', 's', 'created_at')")
    assert f"cannot be the {role} of" in str(err.value)
    assert "lc_monetary" in (err.value.diag.message_hint or "")


# --- 1. spoofed NOTIFY payloads and `pgjobs watch` ------------------------------


def _spoofs(job_id: int) -> list[str]:
    """Payloads any role can send on any channel: not JSON, not objects, objects
    missing or mistyping the fields, and a well-formed lie about a real job."""
    lie = {"id": job_id, "kind": "evil", "event": "succeeded", "status": "succeeded",
           "done": 99, "total": 99, "target": "public.nowhere", "scope": "x"}
    return ["not json", "", "{}", '{"id":1}', "[1, 2]", '"a string"', "null", "42", "1e400",
            "[" * 7000, '{"id": "1", "event": "started"}', '{"id": true, "event": "started"}',
            f'{{"id": {job_id}.0, "event": "started"}}', f'{{"id": {job_id}, "event": 1}}',
            f'{{"id": {job_id}, "event": "exploded"}}', f'{{"id": {job_id}}}',
            '{"id": 987654321, "event": "started"}', f'{{"id": -{job_id}, "event": "started"}}',
            json.dumps(lie), json.dumps({**lie, "event": "progress", "status": "running"})]


def _start_watch(dsn: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PGJOBS_DSN"] = dsn
    return subprocess.Popen([*pgjobs_command(), "watch", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _spoof(conn: Conn, channels: list[str], job_id: int) -> None:
    for channel in channels:
        for payload in _spoofs(job_id):
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def test_watch_all_ignores_spoofed_payloads_and_prints_the_table(
        dsn: str, conn: Conn, make_conn: Any) -> None:
    make_target(conn)
    job_id = submit(conn)
    watcher = _start_watch(dsn, "--timeout", "4")
    try:
        wait_for_backend(conn, "pgjobs watch", "LISTEN pgjobs")
        _spoof(make_conn(), ["pgjobs"], job_id)
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    assert err == ""
    # One line, from the row (queued, nothing done), whatever the lies said.
    assert out.splitlines() == [f"job {job_id} custom progress: queued 0/?"]


def test_watch_one_job_ignores_spoofed_payloads_and_exits_as_normal(
        dsn: str, conn: Conn, make_conn: Any) -> None:
    make_target(conn)
    job_id = submit(conn)
    channel = scalar(conn, "SELECT pgjobs._channel_name('items', '1')")
    watcher = _start_watch(dsn, str(job_id))
    assert watcher.stdout is not None
    try:
        wait_for_backend(conn, "pgjobs watch", "%FROM pgjobs.jobs%")
        spoofer = make_conn()
        _spoof(spoofer, ["pgjobs", channel], job_id)
        # Woken by the lies, the watcher prints the row as it is: queued.
        assert watcher.stdout.readline() == f"job {job_id} custom progress: queued 0/?\n"
        assert claim(conn, "w") == [job_id]
        assert watcher.stdout.readline() == f"job {job_id} custom started: running 0/?\n"
        _spoof(spoofer, ["pgjobs", channel], job_id)
        assert scalar(conn, "SELECT pgjobs.heartbeat(%s, %s, 3)", (job_id, who(conn, job_id, "w")))
        _spoof(spoofer, ["pgjobs", channel], job_id)
        assert scalar(conn, "SELECT pgjobs.complete(%s, %s)", (job_id, who(conn, job_id, "w")))
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    assert err == ""
    # Every line is a state the row had: running 0 or 3 rows done, then succeeded.
    assert set(out.splitlines()) <= {f"job {job_id} custom progress: running 0/?",
                                     f"job {job_id} custom progress: running 3/?",
                                     f"job {job_id} custom succeeded 3/3 100%"}
    assert out.splitlines()[-1] == f"job {job_id} custom succeeded 3/3 100%"


def test_watch_one_job_canceled_under_spoofed_success_exits_1(
        dsn: str, conn: Conn, make_conn: Any) -> None:
    make_target(conn)
    job_id = submit(conn)
    watcher = _start_watch(dsn, str(job_id))
    try:
        wait_for_backend(conn, "pgjobs watch", "%FROM pgjobs.jobs%")
        _spoof(make_conn(), ["pgjobs"], job_id)
        conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 1, err
    assert "Traceback" not in err
    assert out.splitlines()[-1] == f"job {job_id} custom canceled 0/?"
    assert "succeeded" not in out
