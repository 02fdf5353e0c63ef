"""A key spelt another way is the same key, at every entry point (h189).

A delete's exclude list, pgjobs.preview's and pgjobs.visible's cursor
(p_after) read keys as text. A key type that has equal values spelt apart
(`01` and `1`, `1.0` and `1`, `KEY1` and `key1` under a case-insensitive
collation, one instant in two time zones, one date in two DateStyles, the
same uuid in capitals or braces, `\\001` and `\\x01`, a MAC address in
another notation, `ab` and `ab  ` for a char(4), a regclass by name or by
oid) must mean that value: an exclude key keeps exactly that row (never
another, never none), a preview counts what the delete takes, and a cursor
starts after exactly that row. Parametrized over every key type
register_target allows that has such spellings, over the short (inline)
and the long (more than 100 keys: pgjobs.job_exclusions where the text is
the identity) exclude lists, with the caller's own TimeZone and DateStyle
where the spelling needs them (the runner's session is another).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import run_job, scalar

Conn = psycopg.Connection[Any]

UUID = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1{}"
# key type (column declaration): (the three keys in order, as SQL literals of
# the type; spellings of the first: (text, session settings); a key of no row
# for the long list, from an integer)
KEYS: dict[str, tuple[list[str], list[tuple[str, dict[str, str]]], Any]] = {
    "smallint": (["1", "2", "3"], [("01", {}), ("+1", {}), (" 1 ", {})],
                 lambda i: str(1000 + i)),
    "integer": (["1", "2", "3"], [("0001", {}), ("+1", {})], lambda i: str(1000 + i)),
    "bigint": (["1", "2", "3"], [("01", {}), (" +01", {})], lambda i: str(1000 + i)),
    "int_d": (["1", "2", "3"], [("01", {})], lambda i: str(1000 + i)),
    "numeric": (["1", "2", "3"], [("1.0", {}), ("01.000", {}), ("1e0", {}), ("+1", {})],
                lambda i: str(1000 + i)),
    "numeric(8,3)": (["1.5", "2.5", "3.5"], [("1.50", {}), ("1.500", {}), ("15e-1", {})],
                     lambda i: str(1000 + i)),
    "double precision": (["1.5", "2.5", "3.5"], [("1.50", {}), ("15e-1", {})],
                         lambda i: str(1000 + i)),
    "uuid": ([UUID.format(1), UUID.format(2), UUID.format(3)],
             [(UUID.format(1).upper(), {}), ("{" + UUID.format(1) + "}", {}),
              (UUID.format(1).replace("-", ""), {})],
             lambda i: f"{i:08x}-0000-4000-8000-000000000000"),
    "text_ci": (["key1", "key2", "key3"], [("KEY1", {}), ("Key1", {})],
                lambda i: f"absent-{i}"),
    "varchar(8)_ci": (["key1", "key2", "key3"], [("KEY1", {})], lambda i: f"abs-{i}"),
    "timestamptz": (["2030-02-01 00:00:00+00", "2030-02-02 00:00:00+00",
                     "2030-02-03 00:00:00+00"],
                    [("2030-02-01 09:00:00+09", {}), ("2030-02-01T00:00:00Z", {}),
                     ("2030-02-01 09:00", {"TimeZone": "Asia/Tokyo"}),
                     ("01/02/2030 01:00", {"DateStyle": "SQL, DMY",
                                           "TimeZone": "Europe/Paris"})],
                    lambda i: f"2031-01-01 00:00:{i % 60:02d}+00"),
    "timestamp": (["2030-02-01 00:00:00", "2030-02-02 00:00:00", "2030-02-03 00:00:00"],
                  [("2030-02-01T00:00:00", {}), ("01/02/2030", {"DateStyle": "SQL, DMY"}),
                   ("02/01/2030", {"DateStyle": "SQL, MDY"})],
                  lambda i: f"2031-01-01 00:00:{i % 60:02d}"),
    "date": (["2030-02-01", "2030-02-02", "2030-02-03"],
             [("01/02/2030", {"DateStyle": "SQL, DMY"}), ("02/01/2030", {"DateStyle": "MDY"}),
              ("Feb 1 2030", {}), ("20300201", {})],
             lambda i: f"2031-01-{1 + i % 28:02d}"),
    "interval": (["1 day", "2 days", "3 days"], [("24 hours", {}), ("P1D", {})],
                 lambda i: f"{100 + i} days"),
    "bytea": (["\\x01", "\\x02", "\\x03"], [("\\001", {})], lambda i: f"\\x{1000 + i:04x}"),
    "inet": (["10.0.0.1", "10.0.0.2", "10.0.0.3"], [("10.0.0.1/32", {})],
             lambda i: f"10.1.{i // 256}.{i % 256}"),
    "oid": (["7", "8", "9"], [("007", {})], lambda i: str(1000 + i)),
    "real": (["1.5", "2.5", "3.5"], [("1.50", {}), ("15e-1", {})], lambda i: str(1000 + i)),
    "time": (
        ["01:00:00", "02:00:00", "03:00:00"],
        [("1:00", {}), ("01:00:00.000", {}), ("1:00 AM", {})],
        lambda i: f"05:{i // 60:02d}:{i % 60:02d}",
    ),
    "timetz": (
        ["01:00:00+00", "02:00:00+00", "03:00:00+00"],
        [("1:00+00", {}), ("01:00:00 +00:00", {})],
        lambda i: f"05:{i // 60:02d}:{i % 60:02d}+00",
    ),
    "macaddr": (
        ["08:00:2b:01:02:03", "08:00:2b:01:02:04", "08:00:2b:01:02:05"],
        [("08-00-2B-01-02-03", {}), ("0800.2b01.0203", {}), ("08002b010203", {})],
        lambda i: f"08:00:2b:00:{i // 256:02x}:{i % 256:02x}",
    ),
    "bit(4)": (["0001", "0010", "0011"], [("x1", {})], None),
    "char(4)": (["ab", "ac", "ad"], [("ab  ", {}), ("ab   ", {})], lambda i: f"z{i:03d}"),
    "regclass": (["h189_ka", "h189_kb", "h189_kc"],
                 [("public.h189_ka", {}), ("PUBLIC.H189_KA", {}), ('"public"."h189_ka"', {}),
                  ("<oid>", {})],
                 None),
}
DECLS = {"int_d": "h189_int_d", "text_ci": 'text COLLATE "h189_ci"',
         "varchar(8)_ci": 'varchar(8) COLLATE "h189_ci"'}
SPELLINGS = [(t, i) for t, (_, s, _) in KEYS.items() for i in range(len(s))]


@pytest.fixture
def keyed(conn: Conn, request: pytest.FixtureRequest) -> tuple[str, str]:
    """Table t: the three keys in scope 1 (ord 1, 2, 3), the first again in
    scope 2; returns (key type, spelling of the first key)."""
    key_type, index = request.param
    if "_ci" in key_type:
        if not scalar(conn, "SELECT count(*) FROM pg_collation WHERE collprovider = 'i'"):
            pytest.skip("this server has no ICU")
        conn.execute("CREATE COLLATION h189_ci (provider = icu, locale = 'und-u-ks-level2',"
                     " deterministic = false)")
    conn.execute("CREATE DOMAIN h189_int_d AS integer CHECK (VALUE > 0)")
    conn.execute("CREATE TABLE h189_ka (); CREATE TABLE h189_kb (); CREATE TABLE h189_kc ()")
    keys, spellings, _ = KEYS[key_type]
    conn.execute(f"""CREATE TABLE t (k {DECLS.get(key_type, key_type)} NOT NULL,
                     s int NOT NULL, ord int NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')""")
    conn.execute("CREATE INDEX ON t (s, k)")
    conn.execute("SELECT pgjobs.register_target('t', 'k', 's', 'created_at')")
    for s, ord_, key in [(1, 1, keys[0]), (1, 2, keys[1]), (1, 3, keys[2]), (2, 1, keys[0])]:
        conn.execute("INSERT INTO t (k, s, ord) VALUES (%s, %s, %s)", (key, s, ord_))
    spelling, settings = spellings[index]
    if spelling == "<oid>":
        spelling = str(scalar(conn, "SELECT %s::regclass::oid", (keys[0],)))
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return key_type, spelling


def ords(conn: Conn, scope: int) -> list[int]:
    return [r[0] for r in conn.execute("SELECT ord FROM t WHERE s = %s ORDER BY ord", (scope,))]


@pytest.mark.parametrize("long", [False, True], ids=["inline", "long"])
@pytest.mark.parametrize("keyed", SPELLINGS, indirect=True,
                         ids=[f"{t}-{i}" for t, i in SPELLINGS])
def test_an_exclude_key_spelt_another_way_keeps_exactly_its_row(
        conn: Conn, keyed: tuple[str, str], long: bool) -> None:
    key_type, spelling = keyed
    absent = KEYS[key_type][2]
    if long and absent is None:
        pytest.skip("no 100 keys of no row for this type")
    exclude = [spelling] + ([absent(i) for i in range(120)] if long else [])
    options = '{"allow_unknown_keys": true}' if long else "{}"
    seen = scalar(conn, "SELECT pgjobs.preview('t', '1', '{}', %s, %s::jsonb)",
                  (exclude, options))
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('t', '1', '{}', %s, %s::jsonb)",
                    (exclude, options))
    # The mask hides what the job will delete, and nothing else.
    assert scalar(conn, "SELECT pgjobs.visible_count('t', '1')") == 1
    conn.execute("RESET ALL")  # the runner's session is another
    run_job(conn, job_id)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert (ords(conn, 1), ords(conn, 2)) == ([1], [1]), (key_type, spelling)
    assert seen["matches"] == 2, seen


@pytest.mark.parametrize("keyed", SPELLINGS, indirect=True,
                         ids=[f"{t}-{i}" for t, i in SPELLINGS])
def test_a_cursor_spelt_another_way_starts_after_exactly_its_row(
        conn: Conn, keyed: tuple[str, str]) -> None:
    _, spelling = keyed
    rows = [r[0] for r in conn.execute(
        "SELECT (v ->> 'ord')::int FROM pgjobs.visible('t', '1', '{}', %s) v", (spelling,))]
    assert rows == [2, 3], spelling


# Every entry point that reads a name of an oid-alias type (a regclass key,
# a filter value of a reg* column) given as text: (SQL, parameters).
NAME_ENTRIES: dict[str, tuple[str, str]] = {
    "submit_delete exclude": ("SELECT pgjobs.submit_delete('rk', '1', '{}', ARRAY[%s])", "{}"),
    "preview exclude": ("SELECT pgjobs.preview('rk', '1', '{}', ARRAY[%s])", "{}"),
    "submit_delete filter": ("SELECT pgjobs.submit_delete('rk', '1', %s)", "filter"),
    "submit_backfill filter": (
        "SELECT pgjobs.submit_backfill('rk', '1', %s, '{\"n\": 5}')", "filter"),
    "submit_export filter": ("SELECT pgjobs.submit_export('rk', '1', %s)", "filter"),
    "preview filter": ("SELECT pgjobs.preview('rk', '1', %s)", "filter"),
    "visible filter": ("SELECT count(*) FROM pgjobs.visible('rk', '1', %s)", "filter"),
    "visible_count filter": ("SELECT pgjobs.visible_count('rk', '1', %s)", "filter"),
    "visible p_after": ("SELECT count(*) FROM pgjobs.visible('rk', '1', '{}', %s)", "{}"),
}


@pytest.fixture
def rk(conn: Conn) -> Conn:
    """Target rk: a regclass key (tables h189_ka, h189_kb in public) and a
    regtype column ty, in scope 1."""
    conn.execute("CREATE TABLE h189_ka (); CREATE TABLE h189_kb ()")
    conn.execute("""CREATE TABLE rk (k regclass NOT NULL, s int NOT NULL, n int,
                     ty regtype NOT NULL DEFAULT 'int4',
                     created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')""")
    conn.execute("CREATE INDEX ON rk (s, k)")
    conn.execute("SELECT pgjobs.register_target('rk', 'k', 's', 'created_at')")
    conn.execute("INSERT INTO rk (k, s) VALUES ('h189_ka', 1), ('h189_kb', 1)")
    return conn


def _entry(conn: Conn, entry: str, column: str, name: str) -> Any:
    sql, shape = NAME_ENTRIES[entry]
    arg = json.dumps({column: name}) if shape == "filter" else name
    with conn.transaction():
        return conn.execute(sql, (arg,)).fetchone()


@pytest.mark.parametrize("entry", list(NAME_ENTRIES))
def test_an_unqualified_name_is_refused_with_a_hint_to_qualify_it(rk: Conn, entry: str) -> None:
    """pgjobs reads a name with its own search_path (pg_catalog, pg_temp),
    not the caller's, so `h189_ka` (public's) is no table there: every
    entry point refuses it with 22023 and a hint that says to write it
    schema-qualified or by its oid (it said "List keys of the rows to keep,
    as text.", "Values are cast to the column type regclass.", or gave the
    raw 42P01 for visible's cursor); the qualified name and the oid work."""
    columns = ["k", "ty"] if "filter" in entry else ["k"]
    for column, name in zip(columns, ["h189_ka", "h189_no_type"], strict=False):
        with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
            _entry(rk, entry, column, name)
        hint = str(exc.value.diag.message_hint)
        assert "schema-qualified" in hint and "oid" in hint, (entry, column, exc.value, hint)
        assert "does not apply" not in str(exc.value.diag.message_primary), exc.value
    oid = str(scalar(rk, "SELECT 'h189_ka'::regclass::oid"))
    for name in ("public.h189_ka", oid):
        _entry(rk, entry, "k", name)
    if "filter" in entry:
        _entry(rk, entry, "ty", "pg_catalog.int4")


@pytest.mark.parametrize("scope_type", ["regclass", "regtype", "regrole", "xid8"])
@pytest.mark.parametrize("changed", [False, True], ids=["as-registered", "altered"])
def test_the_refusal_of_a_registered_scope_type_says_exactly_why(
        conn: Conn, scope_type: str, changed: bool) -> None:
    """A target registered with a scope column this release refuses (an
    upgraded install) is refused at every use, and the job it fails, with
    register_target's error. The message said "(the table changed after it
    was registered, or this release refuses what it was registered with)"
    whether or not the table changed: it now says the one that holds, for
    _target (every entry point and a job's page) and doctor's detail."""
    registered = "text" if changed else scope_type
    conn.execute(f"""CREATE TABLE old (id bigint NOT NULL, tenant {registered} NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')""")
    conn.execute("CREATE INDEX ON old (tenant, id)")
    conn.execute("""INSERT INTO pgjobs.target_registry (target, key_column, scope_column,
                        created_at_column, key_type, scope_type, options)
                    VALUES ('old', 'id', 'tenant', 'created_at', 'bigint'::regtype,
                            %s::regtype, '{}')""", (registered,))
    if changed:
        conn.execute(f"ALTER TABLE old ALTER COLUMN tenant TYPE {scope_type} USING NULL")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc, conn.transaction():
        conn.execute("SELECT pgjobs._target('old')")
    detail = scalar(conn, "SELECT detail FROM pgjobs.doctor('old')"
                          " WHERE check_name = 'target.registration'")
    for text in (str(exc.value.diag.message_primary), detail):
        if changed:
            assert "the table changed after it was registered" in text, text
            assert "this release refuses" not in text, text
        else:
            assert "changed after" not in text, text
            assert "this release refuses what it was registered with" in text, text


def test_a_running_delete_s_regclass_cursor_survives_a_rename(conn: Conn) -> None:
    """A delete's cursor (checkpoint.after, pgjobs._nth_key: pages, export
    chunks and parts share it) of a regclass key was the key's name: a
    rename between two pages moved it to another table's oid, and the next
    page started after that one: rows skipped and the job succeeded. It is
    the oid now."""
    conn.execute("CREATE TABLE h189_ka (); CREATE TABLE h189_kb (); CREATE TABLE h189_kc ()")
    conn.execute("""CREATE TABLE rc (k regclass NOT NULL, s int NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now() - interval '1 day')""")
    conn.execute("CREATE INDEX ON rc (s, k)")
    conn.execute("SELECT pgjobs.register_target('rc', 'k', 's', 'created_at')")
    conn.execute("INSERT INTO rc (k, s) VALUES ('h189_ka', 1), ('h189_kb', 1), ('h189_kc', 1)")
    job_id = scalar(conn, """SELECT pgjobs.submit_delete('rc', '1', '{}', '{}',
                                                         '{"page_size": 1}')""")
    runner = scalar(conn, "SELECT worker FROM pgjobs._claim_id(%s, 'w')", (job_id,))
    while scalar(conn, "SELECT count(*) FROM rc") == 3:
        assert scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, runner)) == "more"
    after = scalar(conn, "SELECT checkpoint ->> 'after' FROM pgjobs.jobs WHERE id = %s",
                   (job_id,))
    conn.execute("ALTER TABLE h189_ka RENAME TO h189_ka_old; ALTER TABLE h189_kc RENAME TO h189_ka")
    while scalar(conn, "SELECT pgjobs._run_page(%s, %s)", (job_id, runner)) == "more":
        pass
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "succeeded"
    assert scalar(conn, "SELECT count(*) FROM rc") == 0, after
    assert after.isdigit(), after
