"""The read path keeps a target's array shape, sealed, until a DDL commits.

pgjobs.visible appends to each page's to_jsonb(t.*) a test per column whose
type may hold an array (pgjobs._array_bounds_test): a value holding an array
whose lower bounds are not all 1 reads as its PostgreSQL text. Building that
text walks the catalog (more than the page costs), so
pgjobs._array_bounds_row keeps it in the session setting
pgjobs.verified_shape_<oid> ('<DDL epoch>/<seal>/<text>') and uses it while
the DDL fence's epoch (migration 0091) has not moved. The text runs as
pgjobs' owner, and any role may set a pgjobs.* setting, so:

- a kept text counts only with its seal (the engine's secret, the slot, the
  target, the text, the epoch, the role and the backend): a client's own
  value, an edited one, one copied from another target's slot, another
  session, another role, an earlier epoch or the trust verdict's slot is
  rebuilt, never run (the marker text below would show in the rows);
- a DDL between two reads of one session (another session's, committed; the
  session's own, in its open transaction; a column's type, a nested
  composite's field, a rename, a drop) is seen by the next read;
- nothing is kept when the fence cannot see every DDL (an event trigger
  disabled) or when a type of the columns lives in a temporary schema.

The test that a sealed value is used at all (test_a_sealed_shape_is_used)
fails on the code before the cache; the others guard the cache itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support import scalar

Conn = psycopg.Connection[Any]
PID = os.getpid()
CLIENT = f"pgjobs_shape_client_{PID}"
SEALER = f"pgjobs_shape_sealer_{PID}"
# A text a forger would like the read to run: every row then says so.
MARKER = " OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('forged', true)"
SHIFTED = "'[0:1]={1,2}'"  # an int[] whose lower bound is 0: read as its text


@pytest.fixture
def world(conn: Conn) -> Iterator[None]:
    conn.execute(f"""
        CREATE ROLE {CLIENT} NOLOGIN IN ROLE pgjobs_client;
        CREATE ROLE {SEALER} NOLOGIN IN ROLE pgjobs_admin;
        CREATE TYPE sc_pair AS (label text, n int);
        CREATE TABLE sc_rows (id bigint PRIMARY KEY, scope int NOT NULL,
                              created_at timestamptz NOT NULL DEFAULT now(),
                              nums int[], pair sc_pair, note text);
        INSERT INTO sc_rows (id, scope, nums, pair, note)
        VALUES (1, 1, {SHIFTED}, ROW('a', 1), '{SHIFTED[1:-1]}'),
               (2, 1, '{{3,4}}', ROW('b', 2), '{{5}}');
        CREATE INDEX ON sc_rows (scope, id);
        SELECT pgjobs.register_target('sc_rows', 'id', 'scope', 'created_at');
        GRANT SELECT ON sc_rows TO {CLIENT};
        CREATE TABLE sc_other (id bigint PRIMARY KEY, scope int NOT NULL,
                               created_at timestamptz NOT NULL DEFAULT now(), tags text[]);
        INSERT INTO sc_other VALUES (1, 1, now(), '{{a}}');
        CREATE INDEX ON sc_other (scope, id);
        SELECT pgjobs.register_target('sc_other', 'id', 'scope', 'created_at');
        GRANT SELECT ON sc_other TO {CLIENT};""")
    yield
    conn.execute("RESET ROLE")
    for role in (CLIENT, SEALER):
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def _page(conn: Conn, table: str = "sc_rows") -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT pgjobs.visible('{table}', '1')").fetchall()
    return [row[0] if isinstance(row[0], dict) else json.loads(row[0]) for row in rows]


def _slot(conn: Conn, table: str = "sc_rows") -> str:
    return f"pgjobs.verified_shape_{scalar(conn, 'SELECT %s::regclass::oid', (table,))}"


def _kept(conn: Conn, table: str = "sc_rows") -> str | None:
    value = scalar(conn, "SELECT current_setting(%s, true)", (_slot(conn, table),))
    return value or None


def _epoch(conn: Conn) -> int:
    return int(scalar(conn, "SELECT epoch FROM pgjobs.ddl_fence"))


def _seal(conn: Conn, table: str, text: str, epoch: int) -> str:
    """A value sealed as the connection's current role in its own backend."""
    oid = str(scalar(conn, "SELECT %s::regclass::oid", (table,)))
    mac = scalar(conn, "SELECT pgjobs._verdict_mac(jsonb_build_array(%s::text, %s::text, "
                       "%s::text)::text, %s)", (f"shape_{oid}", oid, text, str(epoch)))
    assert mac and len(mac) == 64
    return f"{epoch}/{mac}/{text}"


def _set(conn: Conn, table: str, value: str) -> None:
    conn.execute("SELECT set_config(%s, %s, false)", (_slot(conn, table), value))


def _forged(rows: list[dict[str, Any]]) -> bool:
    return any("forged" in row for row in rows)


def test_a_read_keeps_a_sealed_shape_and_reads_as_before(conn: Conn, world: None) -> None:
    conn.execute(f"SET ROLE {CLIENT}")
    first = _page(conn)
    assert first[0]["nums"] == "[0:1]={1,2}" and first[1]["nums"] == [3, 4]
    value = _kept(conn)
    assert value is not None
    epoch, mac, text = value.split("/", 2)
    conn.execute("RESET ROLE")
    assert int(epoch) == _epoch(conn) and len(mac) == 64
    assert "array_lower" in text and "t.nums" in text and "t.note" not in text
    conn.execute(f"SET ROLE {CLIENT}")
    assert _page(conn) == first  # read again from the kept shape


def test_a_sealed_shape_is_used(conn: Conn, world: None) -> None:
    """The cache is live: a value sealed as pgjobs' owner in this backend
    (the test's role owns pgjobs) is what the next read runs. Fails on the
    code before the cache (it walked the catalog on every call)."""
    owner = scalar(conn, "SELECT pg_get_userbyid(proowner) FROM pg_proc "
                         "WHERE oid = 'pgjobs._visible_as'::regproc")
    assert owner == scalar(conn, "SELECT current_user")
    _page(conn)
    _set(conn, "sc_rows", _seal(conn, "sc_rows", MARKER, _epoch(conn)))
    conn.execute(f"SET ROLE {CLIENT}")
    assert _forged(_page(conn))


FORGERIES = ["unsealed", "edited_text", "other_target", "other_role", "other_backend",
             "earlier_epoch", "trust_verdict", "empty_text_other_target"]


@pytest.mark.parametrize("how", FORGERIES)
def test_a_value_pgjobs_did_not_seal_here_is_rebuilt(
        make_conn: Any, conn: Conn, world: None, how: str) -> None:
    epoch = _epoch(conn)
    _page(conn)
    _page(conn, "sc_other")
    honest = _kept(conn)
    assert honest is not None
    if how == "unsealed":
        value = f"{epoch}/{'ab' * 32}/{MARKER}"
    elif how == "edited_text":
        value = honest + MARKER
    elif how == "other_target":
        value = _seal(conn, "sc_other", MARKER, epoch)
    elif how == "empty_text_other_target":
        value = _seal(conn, "sc_other", "", epoch)  # no test at all, were it honoured
    elif how == "other_role":
        conn.execute(f"SET ROLE {SEALER}")  # may read the secret, is not pgjobs' owner
        value = _seal(conn, "sc_rows", MARKER, epoch)
        conn.execute("RESET ROLE")
    elif how == "other_backend":
        other = make_conn()
        value = _seal(other, "sc_rows", MARKER, epoch)
    elif how == "earlier_epoch":
        conn.execute("CREATE TABLE sc_ddl (i int)")  # a DDL commits: the epoch moves
        assert _epoch(conn) == epoch + 1
        value = _seal(conn, "sc_rows", MARKER, epoch)
    else:  # the trust verdict's value, copied over
        oid = scalar(conn, "SELECT 'sc_rows'::regclass::oid")
        value = scalar(conn, f"SELECT current_setting('pgjobs.verified_trusted_{oid}')")
    conn.execute(f"SET ROLE {CLIENT}")
    _set(conn, "sc_rows", value)  # the client writes it into the slot itself
    rows = _page(conn)
    assert not _forged(rows)
    assert rows[0]["nums"] == "[0:1]={1,2}"
    kept = _kept(conn)
    assert kept is not None and kept != value and "forged" not in kept  # rebuilt, sealed anew


def test_a_committed_column_type_change_is_seen_by_the_next_read(
        make_conn: Any, conn: Conn, world: None) -> None:
    other = make_conn()
    conn.execute(f"SET ROLE {CLIENT}")
    assert _page(conn)[0]["note"] == SHIFTED[1:-1]  # text: as to_jsonb writes it
    other.execute("ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]")
    rows = _page(conn)
    assert rows[0]["note"] == "[0:1]={1,2}" and rows[1]["note"] == [5]
    other.execute("ALTER TABLE sc_rows ALTER COLUMN nums TYPE text USING nums::text")
    assert _page(conn)[0]["nums"] == "[0:1]={1,2}"  # a text now, no test of an array


class _Rollback(Exception):
    pass


def test_a_change_in_the_sessions_own_open_transaction_is_seen(
        conn: Conn, world: None) -> None:
    _page(conn)
    before = _kept(conn)
    with pytest.raises(_Rollback), conn.transaction():
        conn.execute("ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]")
        conn.execute(f"SET LOCAL ROLE {CLIENT}")
        assert _page(conn)[0]["note"] == "[0:1]={1,2}"
        assert _kept(conn) == before  # nothing kept from an uncommitted DDL
        raise _Rollback
    assert _page(conn)[0]["note"] == SHIFTED[1:-1]  # the rollback: the old shape again


def test_a_nested_composite_field_change_is_seen(
        make_conn: Any, conn: Conn, world: None) -> None:
    other = make_conn()
    conn.execute(f"SET ROLE {CLIENT}")
    assert _page(conn)[0]["pair"] == {"label": "a", "n": 1}
    other.execute("ALTER TYPE sc_pair ADD ATTRIBUTE items int[]")
    other.execute(f"UPDATE sc_rows SET pair.items = {SHIFTED} WHERE id = 1")
    rows = _page(conn)
    assert rows[0]["pair"] == '(a,1,"[0:1]={1,2}")'
    assert rows[1]["pair"] == {"label": "b", "n": 2, "items": None}


def test_renames_and_drops_are_seen(make_conn: Any, conn: Conn, world: None) -> None:
    other = make_conn()
    conn.execute(f"SET ROLE {CLIENT}")
    _page(conn)
    other.execute("ALTER TABLE sc_rows RENAME COLUMN nums TO tmp")
    other.execute("ALTER TABLE sc_rows RENAME COLUMN note TO nums")
    other.execute("ALTER TABLE sc_rows RENAME COLUMN tmp TO note")
    rows = _page(conn)
    assert rows[0]["note"] == "[0:1]={1,2}" and rows[0]["nums"] == SHIFTED[1:-1]
    assert rows[1]["note"] == [3, 4] and rows[1]["nums"] == "{5}"
    other.execute("ALTER TABLE sc_rows DROP COLUMN note")
    rows = _page(conn)
    assert "note" not in rows[0] and rows[0]["nums"] == SHIFTED[1:-1]


BLINDS = {
    # (blind the fence, give it its sight back)
    "event_trigger_disabled": ("ALTER EVENT TRIGGER pgjobs_ddl_fence DISABLE",
                               "ALTER EVENT TRIGGER pgjobs_ddl_fence ENABLE ALWAYS"),
    "drop_trigger_disabled": ("ALTER EVENT TRIGGER pgjobs_ddl_fence_drop DISABLE",
                              "ALTER EVENT TRIGGER pgjobs_ddl_fence_drop ENABLE ALWAYS"),
    # a DDL then commits its mark without moving the epoch
    "commit_trigger_disabled": (
        "ALTER TABLE pgjobs.ddl_fence_marks DISABLE TRIGGER ddl_fence_marks_commit",
        "ALTER TABLE pgjobs.ddl_fence_marks ENABLE ALWAYS TRIGGER ddl_fence_marks_commit"),
}


@pytest.mark.parametrize("blind", sorted(BLINDS))
def test_nothing_is_kept_or_used_while_the_fence_cannot_see_ddl(
        make_conn: Any, conn: Conn, world: None, blind: str) -> None:
    other = make_conn()
    off, on = BLINDS[blind]
    conn.execute(off)
    try:
        conn.execute(f"SET ROLE {CLIENT}")
        assert _page(conn)[0]["note"] == SHIFTED[1:-1]
        assert _kept(conn) is None
        conn.execute("RESET ROLE")
        # ... nor used: a value sealed by pgjobs' owner before is not run
        _set(conn, "sc_rows", _seal(conn, "sc_rows", MARKER, _epoch(conn)))
        conn.execute(f"SET ROLE {CLIENT}")
        assert not _forged(_page(conn))
        conn.execute("RESET ROLE")
        _set(conn, "sc_rows", _seal(conn, "sc_rows", "", _epoch(conn)))
        other.execute("ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]")
        conn.execute(f"SET ROLE {CLIENT}")
        assert _page(conn)[0]["note"] == "[0:1]={1,2}"  # whatever the epoch did
    finally:
        conn.execute("RESET ROLE")
        conn.execute(on)


def test_nothing_is_kept_for_a_type_in_a_temporary_schema(conn: Conn, world: None) -> None:
    """DDL on temporary objects moves no epoch (the fence skips it)."""
    conn.execute("CREATE TYPE pg_temp.sc_tmp AS (items int[])")
    conn.execute("ALTER TABLE sc_rows ADD COLUMN tmp pg_temp.sc_tmp")
    _page(conn)
    assert _kept(conn) is None
    conn.execute("ALTER TYPE pg_temp.sc_tmp ADD ATTRIBUTE more int[]")
    conn.execute(f"UPDATE sc_rows SET tmp = ROW('{{1}}', {SHIFTED}) WHERE id = 1")
    assert _page(conn)[0]["tmp"] == '({1},"[0:1]={1,2}")'
