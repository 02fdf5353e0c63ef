"""A job or a read touches exactly its rows (adversarial pass, stop 31).

Four holes, each found as a user or a tenant would, each fixed where every
job and read shares it:

1. A filter value on a column typed by a domain was cast to the domain,
   which keeps its base type's modifiers: {"code": "acme0001x"} on a domain
   over varchar(8) compiled to code = 'acme0001' and deleted that row; on a
   domain over numeric(6,2) {"amt": {"$lte": 1.005}} compiled to <= 1.01
   (pgjobs._compile_filter_field casts to pgjobs._loose_type now).
2. $contains on a column is an ILIKE over col::text, and a timestamptz,
   date, interval, float or bytea prints by the session's settings: one
   delete was previewed at 7 rows in UTC, hid all 10 from a reader in
   Asia/Tokyo and deleted none under a runner in America/Los_Angeles. It is
   refused on such types (pgjobs._text_is_fixed).
3. A partitioned table and one of its partitions (or an inheritance parent
   and child) registered both: a delete queued on the partition was not
   masked in reads of the parent, and a backfill of the parent ran beside
   it. One table of a tree is registered (pgjobs._relative_problem).
4. A backfill's set value was stored as the client's text and parsed again
   by every page in the runner's session: from Asia/Tokyo
   {"due": "2024-01-01 00:00"} set midnight UTC on one runner's rows and
   midnight in New York on another's, and a varchar(4) column got 'abcdef'
   cut to 'abcd' where an UPDATE refuses it (pgjobs._compile_set,
   pgjobs._literal_text).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import build_target, run_job, run_pages, scalar

Conn = psycopg.Connection[Any]


def ids(conn: Conn, where: str = "true", table: str = "t") -> list[int]:
    return [r[0] for r in conn.execute(f"SELECT id FROM {table} WHERE {where} ORDER BY id")]


def visible_ids(conn: Conn, scope: str, filter_: dict[str, Any] | None = None,
                table: str = "t") -> list[int]:
    return sorted(int(r[0]) for r in conn.execute(
        "SELECT v ->> 'id' FROM pgjobs.visible(%s::regclass, %s, %s::jsonb, NULL, 10000) v",
        (table, scope, json.dumps(filter_ or {}))))


def masked_ids(conn: Conn, scope: str, table: str = "t") -> list[int]:
    """The rows of the scope the mask hides, read in this session."""
    mask = scalar(conn, "SELECT pgjobs.mask(%s::regclass, %s)", (table, scope))
    scope_col = scalar(conn, "SELECT scope_column FROM pgjobs.target_registry "
                             "WHERE target = %s::regclass", (table,))
    # (A $contains clause holds an ILIKE pattern: % doubled for psycopg.)
    return [r[0] for r in conn.execute(
        f"SELECT id FROM {table} WHERE {scope_col}::text = %s AND NOT ({mask.replace('%', '%%')})"
        " ORDER BY id", (scope,))]


# --- 1. filter values on domain-typed columns ----------------------------------------

DOMAINS = """
    CREATE DOMAIN code8 AS varchar(8);
    CREATE DOMAIN fixed8 AS character(8);
    CREATE DOMAIN cents AS numeric(6,2);
    CREATE DOMAIN nibble AS bit(4);
    CREATE DOMAIN second AS timestamp(0);
    CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
    CREATE DOMAIN code8_again AS code8;
"""

# (filter, the same condition in plain SQL over the columns' own types)
DOMAIN_FILTERS: list[tuple[dict[str, Any], str]] = [
    ({"code": "acme0001x"}, "code = 'acme0001x'"),
    ({"code": {"$ne": "acme0001x"}}, "code IS DISTINCT FROM 'acme0001x'"),
    ({"code": {"$in": ["acme0001x", "zz"]}}, "code IN ('acme0001x', 'zz')"),
    ({"code": {"$gt": "acme0001x"}}, "code > 'acme0001x'"),
    ({"again": "acme0001x"}, "again = 'acme0001x'"),
    ({"fixed": "acme0001x"}, "fixed = 'acme0001x'::bpchar"),
    ({"amt": {"$lte": 1.005}}, "amt <= 1.005"),
    ({"amt": {"$gt": 1.005}}, "amt > 1.005"),
    ({"amt": 1.005}, "amt = 1.005"),
    ({"bits": "101"}, "bits = B'101'"),
    ({"bits": {"$gte": "1010"}}, "bits >= B'1010'"),
    ({"at": {"$gte": "2030-01-01 00:00:00.4"}}, "at >= '2030-01-01 00:00:00.4'::timestamp"),
    ({"at": "2030-01-01 00:00:00.4"}, "at = '2030-01-01 00:00:00.4'::timestamp"),
    ({"pos": {"$gt": -5}}, "pos > -5"),
    ({"pos": {"$lt": 0}}, "pos < 0"),
    ({"codes": "{acme0001x}"}, "codes::varchar[] = '{acme0001x}'::varchar[]"),
    ({"codes": {"$ne": "{acme0001x}"}},
     "codes::varchar[] IS DISTINCT FROM '{acme0001x}'::varchar[]"),
]


def domain_table(conn: Conn) -> None:
    conn.execute(DOMAINS)
    build_target(conn, "t", """id bigint NOT NULL, s int NOT NULL, code code8, again code8_again,
                 fixed fixed8, amt cents, bits nibble, at second, pos positive, codes code8[],
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="s")
    conn.execute("""
        INSERT INTO t (id, s, code, again, fixed, amt, bits, at, pos, codes) VALUES
          (1, 1, 'acme0001', 'acme0001', 'acme0001', 1.00, B'1010', '2030-01-01 00:00:00', 1,
           '{acme0001}'),
          (2, 1, 'acme0002', 'acme0002', 'acme0002', 1.01, B'1000', '2030-01-01 00:00:01', 2,
           '{acme0002}'),
          (3, 1, 'zz', 'zz', 'zz', 5.00, B'0001', '2029-12-31 23:59:59', 3, '{zz}'),
          (4, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (5, 2, 'acme0001', 'acme0001', 'acme0001', 1.00, B'1010', '2030-01-01 00:00:00', 1,
           '{acme0001}')""")


@pytest.mark.parametrize(("filter_", "sql"), DOMAIN_FILTERS,
                         ids=[json.dumps(f) for f, _ in DOMAIN_FILTERS])
def test_a_filter_on_a_domain_column_selects_what_sql_selects(conn: Conn, filter_: dict[str, Any],
                                                              sql: str) -> None:
    domain_table(conn)
    expect = ids(conn, f"s = 1 AND coalesce(({sql}), false)")
    preview = scalar(conn, "SELECT pgjobs.preview('t', '1', %s::jsonb)", (json.dumps(filter_),))
    assert preview["matches"] == len(expect), (preview["predicate"], expect)
    assert sorted(int(k) for k in preview["sample"]) == expect
    assert visible_ids(conn, "1", filter_) == expect
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('t', '1', %s::jsonb)",
                    (json.dumps(filter_),))
    assert masked_ids(conn, "1") == expect
    assert scalar(conn, "SELECT pgjobs.visible_count('t', '1')") == 4 - len(expect)
    run_job(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert ids(conn) == sorted(set(range(1, 6)) - set(expect))


def test_a_domain_over_an_enum_is_still_refused_at_compile(conn: Conn) -> None:
    """Values go to the base type, the test of the clause still runs on the
    column's own type: a domain over an enum has no `=`, and says so at
    submit, not in the job."""
    conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE DOMAIN mood_d AS mood")
    build_target(conn, "t", """id bigint NOT NULL, s int NOT NULL, m mood_d,
                 created_at timestamptz NOT NULL""", scope="s")
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("""SELECT pgjobs.submit_delete('t', '1', '{"m": "ok"}')""")
    assert '"m" (type public.mood_d)' in str(exc.value)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


# --- 2. $contains only where col::text is the same in every session ------------------

SETTINGS = ["SET TimeZone = 'UTC'", "SET TimeZone = 'Asia/Tokyo'",
            "SET TimeZone = 'America/Los_Angeles'", "SET DateStyle = 'German'",
            "SET DateStyle = 'SQL, DMY'", "SET IntervalStyle = 'sql_standard'",
            "SET extra_float_digits = 0", "SET bytea_output = 'escape'"]

# column type -> a value
REFUSED = {
    "timestamptz": "2024-01-02 03:00:00+00", "timestamp": "2024-01-02 03:00:00",
    "date": "2024-01-02", "time": "03:00:00", "timetz": "03:00:00+02",
    "interval": "1 day 2 hours", "double precision": "0.30000000000000004", "real": "0.1",
    "bytea": "\\x0102", "money": "12.50", "regclass": "pg_class", "point": "(0.1,0.2)",
    "tsrange": "[2024-01-01,2024-01-02)", "date[]": "{2024-01-02}", "public.pair": "(1,x)",
    "public.stamp": "2024-01-02 03:00:00+00",
}
ALLOWED = {
    "text": "Acme Corp", "character varying(20)": "Acme Corp", "character(12)": "Acme Corp",
    "integer": "1234", "bigint": "1234", "numeric": "12.50", "boolean": "true",
    "uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "inet": "10.1.2.3", "jsonb": '{"a": "12"}',
    "json": '{"a": "12"}', "bit varying": "0101", "public.mood": "happy", "integer[]": "{12,3}",
    "text[]": "{ab,cd}", "int4range": "[1,12)", "public.label": "Acme Corp",
}
TYPES = """CREATE TYPE pair AS (a int, b text); CREATE TYPE mood AS ENUM ('sad', 'happy');
           CREATE DOMAIN stamp AS timestamptz; CREATE DOMAIN label AS varchar(20)"""


@pytest.mark.parametrize("type_", sorted(REFUSED))
def test_contains_on_a_column_whose_text_follows_the_session_is_refused(conn: Conn,
                                                                       type_: str) -> None:
    conn.execute(TYPES)
    build_target(conn, "t", f"""id bigint NOT NULL, s int NOT NULL, v {type_},
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="s")
    conn.execute(f"INSERT INTO t (id, s, v) VALUES (1, 1, %s::{type_})", (REFUSED[type_],))
    for filter_ in ({"v": {"$contains": "2"}}, {"v": {"$not": {"$contains": "2"}}},
                    {"$or": [{"id": 1}, {"v": {"$contains": "2"}}]}):
        with pytest.raises(errors.InvalidParameterValue) as exc:
            conn.execute("SELECT pgjobs.submit_delete('t', '1', %s::jsonb)",
                         (json.dumps(filter_),))
        assert 'operator "$contains" at "v"' in str(exc.value)
        assert "$gte" in (exc.value.diag.message_hint or "")
        for read in ("SELECT pgjobs.visible_count('t', '1', %s::jsonb)",
                     "SELECT pgjobs.preview('t', '1', %s::jsonb)",
                     "SELECT pgjobs.compile_filter('t', %s::jsonb)"):
            with pytest.raises(errors.InvalidParameterValue):
                conn.execute(read, (json.dumps(filter_),))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize("type_", sorted(ALLOWED))
def test_contains_on_a_column_whose_text_is_fixed_agrees_in_every_session(
        make_conn: Callable[..., Conn], type_: str) -> None:
    conn = make_conn()
    conn.execute(TYPES)
    build_target(conn, "t", f"""id bigint NOT NULL, s int NOT NULL, v {type_},
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="s")
    conn.execute(f"INSERT INTO t (id, s, v) VALUES (1, 1, %s::{type_}), (2, 1, NULL)",
                 (ALLOWED[type_],))
    conn.execute("INSERT INTO t (id, s, v) SELECT g, 1, NULL FROM generate_series(3, 4) g")
    needle = {"text": "corp", "boolean": "ru", "uuid": "9C0B", "public.mood": "APP",
              "bit varying": "10", "inet": "1.2", "text[]": "b,c"}.get(
        type_, "Corp" if "Acme" in ALLOWED[type_] else "12")
    filter_ = {"v": {"$contains": needle}}
    readers = []
    for setting in SETTINGS:
        reader = make_conn()
        reader.execute(setting)
        readers.append(reader)
        assert scalar(reader, "SELECT (pgjobs.preview('t', '1', %s::jsonb)) -> 'matches'",
                      (json.dumps(filter_),)) == 1, setting
        assert visible_ids(reader, "1", filter_) == [1], setting
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('t', '1', %s::jsonb)",
                    (json.dumps(filter_),))
    for setting, reader in zip(SETTINGS, readers, strict=True):
        assert masked_ids(reader, "1") == [1], (setting, type_)
        assert visible_ids(reader, "1") == [2, 3, 4], setting
        assert scalar(reader, "SELECT pgjobs.visible_count('t', '1')") == 3, setting
    runner = make_conn()
    runner.execute("SET TimeZone = 'America/Los_Angeles'; SET DateStyle = 'SQL, DMY'")
    run_job(runner, job_id)
    assert ids(conn) == [2, 3, 4]


def test_the_reported_delete_is_refused_before_anything_is_written(
        make_conn: Callable[..., Conn]) -> None:
    """The repro: a delete submitted in UTC of {"ts": {"$contains":
    "2024-01-02"}} was previewed at 7 rows, hid all 10 from a reader in
    Asia/Tokyo and deleted none under a runner in America/Los_Angeles."""
    conn = make_conn()
    build_target(conn, "t", """id bigint NOT NULL, s int NOT NULL, ts timestamptz,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'""", scope="s")
    conn.execute("""INSERT INTO t (id, s, ts) SELECT g, 1, timestamptz '2024-01-01 20:00+00'
                    + g * interval '1 hour' FROM generate_series(1, 10) g""")
    conn.execute("SET TimeZone = 'UTC'")
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("""SELECT pgjobs.submit_delete('t', '1',
                                                    '{"ts": {"$contains": "2024-01-02"}}')""")
    assert "prints differently in different sessions" in str(exc.value)
    # The range the hint proposes is one set of rows in every session.
    filter_ = {"ts": {"$gte": "2024-01-02T00:00:00Z", "$lt": "2024-01-03T00:00:00Z"}}
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('t', '1', %s::jsonb)",
                    (json.dumps(filter_),))
    tokyo = make_conn()
    tokyo.execute("SET TimeZone = 'Asia/Tokyo'")
    assert masked_ids(tokyo, "1") == list(range(4, 11))
    runner = make_conn()
    runner.execute("SET TimeZone = 'America/Los_Angeles'")
    run_job(runner, job_id)
    assert ids(conn) == [1, 2, 3]


# --- 3. one registered table per partition or inheritance tree -----------------------

def partitioned(conn: Conn) -> None:
    conn.execute("""
        CREATE TABLE pt (id bigint NOT NULL, s int NOT NULL, n int,
                         created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour')
            PARTITION BY LIST (s);
        CREATE TABLE pt1 PARTITION OF pt FOR VALUES IN (1) PARTITION BY RANGE (id);
        CREATE TABLE pt1a PARTITION OF pt1 FOR VALUES FROM (0) TO (100);
        CREATE TABLE pt2 PARTITION OF pt FOR VALUES IN (2);
        CREATE INDEX ON pt (s, id);
        INSERT INTO pt (id, s) SELECT g, 1 + g % 2 FROM generate_series(1, 10) g""")


def register(conn: Conn, table: str) -> None:
    conn.execute("SELECT pgjobs.register_target(%s::regclass, 'id', 's', 'created_at')",
                 (table,))


@pytest.mark.parametrize(("first", "second"), [("pt", "pt1"), ("pt", "pt1a"), ("pt1", "pt"),
                                               ("pt1a", "pt"), ("pt1", "pt1a")])
def test_a_second_table_of_a_partition_tree_is_refused(conn: Conn, first: str,
                                                       second: str) -> None:
    partitioned(conn)
    register(conn, first)
    with pytest.raises(errors.InvalidParameterValue) as exc:
        register(conn, second)
    assert f"public.{first}" in str(exc.value)
    assert "unregister_target" in (exc.value.diag.message_hint or "")
    # Siblings hold no rows of each other: both may be registered.
    if first != "pt" and second != "pt":
        register(conn, "pt2")


def test_an_inheritance_parent_and_child_are_refused_either_way(conn: Conn) -> None:
    conn.execute("""
        CREATE TABLE ih (id bigint NOT NULL, s int NOT NULL,
                         created_at timestamptz NOT NULL);
        CREATE INDEX ON ih (s, id);
        CREATE TABLE ihc () INHERITS (ih);
        CREATE INDEX ON ihc (s, id)""")
    register(conn, "ihc")
    with pytest.raises(errors.InvalidParameterValue):
        register(conn, "ih")
    conn.execute("SELECT pgjobs.unregister_target('ihc')")
    register(conn, "ih")
    with pytest.raises(errors.InvalidParameterValue):
        register(conn, "ihc")


def test_a_registered_table_attached_under_another_stops_both(conn: Conn) -> None:
    """A delete queued on what becomes a partition of a registered parent
    would not be masked in reads of the parent: every use of either refuses
    until one is unregistered; the queued job fails at its first page."""
    partitioned(conn)
    register(conn, "pt")
    conn.execute("CREATE TABLE pt3 (LIKE pt INCLUDING ALL)")
    conn.execute("INSERT INTO pt3 (id, s) SELECT g, 3 FROM generate_series(1, 4) g")
    register(conn, "pt3")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('pt3', '3')")
    conn.execute("ALTER TABLE pt ATTACH PARTITION pt3 FOR VALUES IN (3)")
    for statement in ("SELECT pgjobs.submit_backfill('pt', '3', '{}', '{\"n\": 1}')",
                      "SELECT pgjobs.submit_delete('pt3', '3')",
                      "SELECT pgjobs.preview('pt', '3')"):
        with pytest.raises(errors.InvalidParameterValue) as exc:
            conn.execute(statement)
        assert "registered with pgjobs" in str(exc.value)
    run_pages(conn, job_id)
    status, error = conn.execute("SELECT status, error FROM pgjobs.jobs WHERE id = %s",
                                 (job_id,)).fetchone() or (None, None)
    assert status == "failed" and "partition or inheritance child" in str(error)
    assert scalar(conn, "SELECT count(*) FROM pt WHERE s = 3") == 4
    conn.execute("SELECT pgjobs.unregister_target('pt3')")
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('pt', '3')")
    assert scalar(conn, "SELECT pgjobs.visible_count('pt', '3')") == 0
    run_job(conn, job_id)
    assert scalar(conn, "SELECT count(*) FROM pt WHERE s = 3") == 0
    assert scalar(conn, "SELECT count(*) FROM pt") == 10


# --- 4. a backfill's set values are parsed once, at the submit ------------------------

def test_a_set_value_means_what_the_submitter_meant_on_every_page(
        make_conn: Callable[..., Conn]) -> None:
    conn = make_conn()
    build_target(conn, "t", """id bigint NOT NULL, s int NOT NULL, due timestamptz,
                 day date, took interval, amount numeric, stamp timestamp, ratio float8,
                 raw bytea, stamps timestamptz[],
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'""", scope="s")
    conn.execute("INSERT INTO t (id, s) SELECT g, 1 FROM generate_series(1, 6) g")
    conn.execute("SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'SQL, DMY'")
    set_ = {"due": "2024-01-01 00:00", "day": "02/01/2024", "took": "36 hours",
            "amount": "1.50", "stamp": "now", "ratio": 0.30000000000000004, "raw": "\\x00ff",
            "stamps": ["2024-01-01 00:00"]}
    job_id = scalar(conn, """SELECT pgjobs.submit_backfill('t', '1', '{}', %s::jsonb,
                                                        '{"page_size": 2}')""",
                    (json.dumps(set_),))
    conn.execute("SET DateStyle = 'ISO, DMY'")  # days first still; psycopg reads ISO only
    expect = conn.execute("""SELECT timestamptz '2024-01-01 00:00', date '02/01/2024',
                                    interval '36 hours', numeric '1.50',
                                    '{2024-01-01 00:00}'::timestamptz[]""").fetchone()
    runners = []
    for setting in ("SET TimeZone = 'UTC'", "SET TimeZone = 'America/New_York'; "
                    "SET DateStyle = 'SQL, MDY'; SET IntervalStyle = 'sql_standard'"):
        runner = make_conn()
        runner.execute(setting)
        runners.append(runner)
    identity = scalar(runners[0], "SELECT (pgjobs._claim_id(%s, 'w')).worker", (job_id,))
    for page in range(8):
        state = scalar(runners[page % 2], "SELECT pgjobs._run_page(%s, %s)", (job_id, identity))
        if state == "done":
            break
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    rows = conn.execute("""SELECT due, day, took, amount, stamps, stamp, ratio, raw,
                                  took::text, amount::text FROM t ORDER BY id""").fetchall()
    assert len(rows) == 6
    for row in rows:
        assert row[:5] == expect, row
        # One instant for 'now' (the submit's), on every page; values as written
        # (36 hours stays 36 hours, 1.50 keeps its scale), floats and bytes exact.
        assert row[5] == rows[0][5]
        assert row[6] == 0.30000000000000004 and row[7] == b"\x00\xff"
        assert row[8] == "36:00:00" and row[9] == "1.50"


def test_a_set_value_the_column_would_cut_is_refused(conn: Conn) -> None:
    conn.execute("CREATE DOMAIN code4 AS varchar(4)")
    build_target(conn, "t", """id bigint NOT NULL, s int NOT NULL, code varchar(4), tag code4,
                 flags bit(4), fixed char(4), codes varchar(4)[], amount numeric(6,2),
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 day'""", scope="s")
    conn.execute("INSERT INTO t (id, s) VALUES (1, 1)")
    for column, value, literal in (("code", "abcdef", "'abcdef'"), ("tag", "abcdef", "'abcdef'"),
                                   ("flags", "101", "'101'"), ("flags", "10101", "'10101'"),
                                   ("fixed", "abcdef", "'abcdef'"),
                                   ("codes", ["ab", "abcdef"], "'{ab,abcdef}'")):
        set_ = {column: value}
        # What an UPDATE of the column says.
        with pytest.raises(psycopg.DataError), conn.transaction():
            conn.execute(f"UPDATE t SET {column} = {literal}")
        with pytest.raises(errors.InvalidParameterValue) as exc:
            conn.execute("SELECT pgjobs.submit_backfill('t', '1', '{}', %s::jsonb)",
                         (json.dumps(set_),))
        assert "would be stored as" in str(exc.value), set_
    # What an UPDATE accepts goes through as it would: trailing spaces are
    # dropped, a numeric rounds to its scale.
    job_id = scalar(conn, """SELECT pgjobs.submit_backfill('t', '1', '{}',
                                 '{"code": "ab    ", "fixed": "abcd  ", "amount": 1.005,
                                   "flags": "1010"}')""")
    run_job(conn, job_id)
    assert conn.execute("SELECT code, fixed, amount::text, flags::text FROM t").fetchone() == (
        "ab  ", "abcd", "1.01", "1010")


# --- 5. a wall-clock created_at that goes back an hour --------------------------------

def test_rows_of_the_hour_a_zone_repeats_after_the_submit_are_spared(conn: Conn) -> None:
    """Europe/Paris left summer time at 2024-10-27 01:00 UTC (03:00 CEST back
    to 02:00 CET). A delete submitted at 02:50 CEST whose page runs after it
    read a row written at 02:10 CET, an hour after the submit, as older than
    its horizon (02:50), and deleted it. The cutoff's clause is asked for
    that submit time directly (pgjobs._cutoff_clause: a submit takes now())."""
    build_target(conn, "t", "id bigint NOT NULL, s int NOT NULL, created_at timestamp",
                 scope="s", options={"created_at_time_zone": "Europe/Paris"})
    conn.execute("""INSERT INTO t (id, s, created_at) VALUES
                      (1, 1, '2024-10-27 01:00'), (2, 1, '2024-10-27 02:20'),
                      (3, 1, '2024-10-26 23:00'), (4, 1, NULL)""")
    clause, horizon = conn.execute(
        """SELECT c.clause, c.horizon FROM pgjobs.target_registry r,
                  pgjobs._cutoff_clause(r, '2024-10-27 00:50:00+00') c
            WHERE r.target = 't'::regclass""").fetchone() or (None, None)
    # Written after the submit, in the hour the zone repeats (and after it).
    conn.execute("""INSERT INTO t (id, s, created_at) VALUES
                      (5, 1, '2024-10-27 02:10'), (6, 1, '2024-10-27 02:49:59'),
                      (7, 1, '2024-10-27 02:00'), (8, 1, '2024-10-27 03:30'), (9, 1, NULL)""")
    assert ids(conn, str(clause)) == [1, 2, 3, 4]
    # The horizon went back below 02:00 (wall clock) only because the zone
    # goes back after the submit; a day earlier it stays the cutoff.
    assert str(horizon) < "2024-10-27 00:00:00+00:00"
    clause = scalar(conn, """SELECT c.clause FROM pgjobs.target_registry r,
                                    pgjobs._cutoff_clause(r, '2024-10-26 00:50:00+00') c
                              WHERE r.target = 't'::regclass""")
    assert "'2024-10-26T02:50:00.000000'::pg_catalog.timestamp OR" in clause
