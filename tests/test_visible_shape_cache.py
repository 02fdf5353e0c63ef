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
  disabled) or when a type of the columns lives in a temporary schema;
- an epoch's number is not all of the seal's time: a number sealed in a
  transaction that rolled back (its own DDL fired the commit trigger early)
  or set back by hand comes again over another shape, and a trigger turned
  off and on around a DDL moves no epoch (the fence row's and the event
  triggers' rows' versions are sealed too); nor is a fence whose mark
  cannot be made (triggers enabled for origin sessions only, under a
  replica session; a mark function's owner that may not write the marks).

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
from tests.support.roles import session_as

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
    # The seal's time: the epoch, the fence row's version and the event
    # triggers' rows' versions (pgjobs._array_bounds_row).
    at = scalar(conn, "SELECT jsonb_build_array(%s::text, f.xmin::text, "
                      "(SELECT string_agg(e.xmin::text, ',' ORDER BY e.evtname) "
                      "FROM pg_event_trigger e WHERE e.evtname IN "
                      "('pgjobs_ddl_fence', 'pgjobs_ddl_fence_drop')))::text "
                      "FROM pgjobs.ddl_fence f", (str(epoch),))
    mac = scalar(conn, "SELECT pgjobs._verdict_mac(jsonb_build_array(%s::text, %s::text, "
                       "%s::text)::text, %s)", (f"shape_{oid}", oid, text, at))
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


# --- Attacks on the seal's time: an epoch number that comes back over
# another shape, or a DDL that no epoch counts.

def _fresh_page(make_conn: Any, table: str = "sc_rows") -> list[dict[str, Any]]:
    """The page a new session of the client reads (nothing kept)."""
    return _page(session_as(make_conn, CLIENT), table)


@pytest.mark.parametrize("undo", ["rollback", "rollback_to_savepoint"])
def test_a_seal_of_an_uncommitted_epoch_is_no_seal_once_that_number_commits(
        make_conn: Any, conn: Conn, world: None, undo: str) -> None:
    """A client's own DDL with SET CONSTRAINTS ALL IMMEDIATE moves the epoch
    in its open transaction; a read then sealed the current shape at that
    number, the client copied the value out and rolled back. The next DDL
    that commits (the owner's, changing the shape) gets the same number: the
    copied value must not be run over the new shape."""
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {CLIENT}")
    other = make_conn()
    epoch = _epoch(conn)
    conn.execute(f"SET ROLE {CLIENT}")
    with pytest.raises(_Rollback), conn.transaction():
        if undo == "rollback_to_savepoint":
            conn.execute("SAVEPOINT s")
        conn.execute("CREATE TABLE sc_mine (i int)")
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        assert _page(conn)[0]["note"] == SHIFTED[1:-1]
        minted = _kept(conn)
        assert minted is not None and minted.startswith(f"{epoch + 1}/")
        if undo == "rollback_to_savepoint":
            conn.execute("ROLLBACK TO SAVEPOINT s")
            assert _page(conn)[0]["note"] == SHIFTED[1:-1]
        raise _Rollback
    assert _epoch(other) == epoch
    other.execute("ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]")
    assert _epoch(other) == epoch + 1  # the number the minted value carries
    _set(conn, "sc_rows", minted)
    rows = _page(conn)
    assert rows == _fresh_page(make_conn)
    assert rows[0]["note"] == "[0:1]={1,2}"


def _add_domain_column(conn: Conn) -> None:
    conn.execute("CREATE DOMAIN sc_ints AS int[]")
    conn.execute(f"ALTER TABLE sc_rows ADD COLUMN d sc_ints DEFAULT {SHIFTED}")


UNSEEN = {
    # (setup, the DDL no epoch counts, run by the owner in one session)
    "event_trigger_off_and_on": (
        None,
        ["ALTER EVENT TRIGGER pgjobs_ddl_fence DISABLE",
         "ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]",
         "ALTER EVENT TRIGGER pgjobs_ddl_fence ENABLE ALWAYS"]),
    "event_trigger_off_and_on_in_one_transaction": (
        None,
        ["BEGIN",
         "ALTER EVENT TRIGGER pgjobs_ddl_fence DISABLE",
         "ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]",
         "ALTER EVENT TRIGGER pgjobs_ddl_fence ENABLE ALWAYS",
         "COMMIT"]),
    "drop_trigger_off_and_on": (
        _add_domain_column,
        ["ALTER EVENT TRIGGER pgjobs_ddl_fence_drop DISABLE",
         "DROP DOMAIN sc_ints CASCADE",  # drops column d; only sql_drop marks it
         "ALTER EVENT TRIGGER pgjobs_ddl_fence_drop ENABLE ALWAYS"]),
}


@pytest.mark.parametrize("how", sorted(UNSEEN))
def test_a_ddl_while_the_fence_looked_away_is_seen_by_the_next_read(
        make_conn: Any, conn: Conn, world: None, how: str) -> None:
    """A superuser turns an event trigger off, runs DDL and turns it on
    again: no epoch moved, the triggers are enabled again and no mark is
    left, yet the shape changed."""
    setup, ddl = UNSEEN[how]
    other = make_conn()
    if setup is not None:
        setup(other)
    epoch = _epoch(conn)
    conn.execute(f"SET ROLE {CLIENT}")
    _page(conn)
    assert _kept(conn) is not None
    for statement in ddl:
        other.execute(statement)
    assert _epoch(other) == epoch  # the fence counted nothing
    assert _page(conn) == _fresh_page(make_conn)


def test_a_replica_sessions_ddl_is_seen_when_the_triggers_fire_for_origin_only(
        make_conn: Any, conn: Conn, world: None) -> None:
    """Event triggers enabled for origin sessions (ENABLE, not ENABLE
    ALWAYS) do not fire under session_replication_role = replica, which a
    superuser may set (a client may not)."""
    other = make_conn()
    other.execute("ALTER EVENT TRIGGER pgjobs_ddl_fence ENABLE")
    other.execute("ALTER EVENT TRIGGER pgjobs_ddl_fence_drop ENABLE")
    try:
        epoch = _epoch(conn)
        conn.execute(f"SET ROLE {CLIENT}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET session_replication_role = replica")
        _page(conn)
        other.execute("SET session_replication_role = replica")
        other.execute("ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]")
        other.execute("RESET session_replication_role")
        assert _epoch(other) == epoch
        assert _page(conn) == _fresh_page(make_conn)
        assert _page(conn)[0]["note"] == "[0:1]={1,2}"
    finally:
        other.execute("ALTER EVENT TRIGGER pgjobs_ddl_fence ENABLE ALWAYS")
        other.execute("ALTER EVENT TRIGGER pgjobs_ddl_fence_drop ENABLE ALWAYS")


def test_a_kept_shape_reads_the_same_for_every_role_of_the_session(
        make_conn: Any, conn: Conn, world: None) -> None:
    """The text runs as pgjobs' owner for any caller and depends on the
    target alone: a value kept under one role (SET ROLE, SET SESSION
    AUTHORIZATION, a SECURITY DEFINER function of another role calling
    visible) reads what a new session of each role reads."""
    second = f"{CLIENT}_b"
    conn.execute(f"CREATE ROLE {second} NOLOGIN IN ROLE pgjobs_client")
    try:
        conn.execute(f"GRANT SELECT ON sc_rows TO {second}")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {second}")
        conn.execute(f"SET ROLE {second}")
        conn.execute("CREATE FUNCTION sc_read() RETURNS SETOF jsonb LANGUAGE sql "
                     "SECURITY DEFINER SET search_path = pg_catalog "
                     "AS $$ SELECT pgjobs.visible('public.sc_rows', '1') $$")
        conn.execute("RESET ROLE")
        conn.execute(f"GRANT EXECUTE ON FUNCTION sc_read() TO {CLIENT}")
        expected = _fresh_page(make_conn)
        conn.execute(f"SET ROLE {CLIENT}")
        assert _page(conn) == expected
        kept = _kept(conn)
        assert kept is not None
        definer = [json.loads(r[0]) if isinstance(r[0], str) else r[0]
                   for r in conn.execute("SELECT sc_read()").fetchall()]
        assert definer == expected
        conn.execute("RESET ROLE")
        conn.execute(f"SET SESSION AUTHORIZATION {second}")
        assert _page(conn) == expected
        assert _kept(conn) == kept  # the same text, the same seal
    finally:
        conn.execute("RESET SESSION AUTHORIZATION")
        conn.execute("RESET ROLE")
        conn.execute(f"DROP OWNED BY {second}")
        conn.execute(f"DROP ROLE {second}")


TRICKS = {
    "extra_fields": lambda honest: honest + "/" + MARKER,
    "newline": lambda honest: honest + "\n" + MARKER,
    "leading_zero_epoch": lambda honest: "0" + honest,
    "signed_epoch": lambda honest: "+" + honest,
    "long_epoch": lambda honest: "9" * 19 + honest[honest.index("/"):],
    "upper_hex_seal": lambda honest: honest.split("/", 1)[0] + "/"
    + honest.split("/", 2)[1].upper() + "/" + honest.split("/", 2)[2],
    "text_into_seal": lambda honest: honest.split("/", 1)[0] + "/"
    + honest.split("/", 2)[1][:-1] + "/" + honest.split("/", 2)[1][-1] + honest.split("/", 2)[2],
    "very_long": lambda honest: honest + " " * 1_000_000 + MARKER,
}


@pytest.mark.parametrize("how", sorted(TRICKS))
def test_an_edited_value_of_any_shape_is_rebuilt(
        make_conn: Any, conn: Conn, world: None, how: str) -> None:
    expected = _fresh_page(make_conn)
    conn.execute(f"SET ROLE {CLIENT}")
    _page(conn)
    honest = _kept(conn)
    assert honest is not None
    _set(conn, "sc_rows", TRICKS[how](honest))
    rows = _page(conn)
    assert rows == expected and not _forged(rows)
    assert _kept(conn) == honest


def test_a_seal_kept_across_a_rolled_back_prepared_transaction_is_no_seal(
        make_conn: Any, conn: Conn, world: None) -> None:
    """A session-level setting made in a transaction survives PREPARE
    TRANSACTION, and ROLLBACK PREPARED does not undo it: the value sealed
    at the prepared transaction's own epoch stays in the session, no copy
    needed, while that number is given to the next DDL that commits."""
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {CLIENT}")
    other = make_conn()
    epoch = _epoch(conn)
    conn.execute(f"SET ROLE {CLIENT}")
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE sc_mine (i int)")
    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
    _page(conn)
    conn.execute(f"PREPARE TRANSACTION 'sc-shape-{PID}'")
    conn.execute(f"ROLLBACK PREPARED 'sc-shape-{PID}'")
    kept = _kept(conn)
    assert kept is not None and kept.startswith(f"{epoch + 1}/")  # still in the session
    other.execute("ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]")
    assert _epoch(other) == epoch + 1
    rows = _page(conn)
    assert rows == _fresh_page(make_conn) and rows[0]["note"] == "[0:1]={1,2}"


def test_an_epoch_set_back_by_hand_does_not_revive_a_kept_shape(
        make_conn: Any, conn: Conn, world: None) -> None:
    """No client may write the fence's tables; its owner may, and an epoch
    set back (or the row deleted and inserted again) then counts up to the
    number a kept value carries over another shape."""
    other = make_conn()
    conn.execute(f"SET ROLE {CLIENT}")
    for statement in ("UPDATE pgjobs.ddl_fence SET epoch = epoch - 1",
                      "DELETE FROM pgjobs.ddl_fence",
                      "DELETE FROM pgjobs.ddl_fence_marks",
                      "INSERT INTO pgjobs.ddl_fence_marks VALUES ('1')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    _page(conn)
    kept = _kept(conn)
    assert kept is not None
    other.execute("UPDATE pgjobs.ddl_fence SET epoch = epoch - 1")
    other.execute("ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]")
    assert kept.startswith(f"{_epoch(other)}/")
    rows = _page(conn)
    assert rows == _fresh_page(make_conn) and rows[0]["note"] == "[0:1]={1,2}"


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_a_shape_read_through_an_old_snapshot_is_not_kept_past_it(
        make_conn: Any, conn: Conn, world: None, isolation: str) -> None:
    """A transaction whose snapshot predates a committed DDL reads the old
    epoch and the old catalog together; the next transaction reads the new
    shape, as a new session does."""
    other = make_conn()
    conn.execute(f"SET ROLE {CLIENT}")
    conn.execute(f"BEGIN ISOLATION LEVEL {isolation}")
    conn.execute("SELECT 1")  # the snapshot
    other.execute("ALTER TYPE sc_pair ADD ATTRIBUTE items int[]")
    other.execute(f"UPDATE sc_rows SET pair.items = {SHIFTED} WHERE id = 1")
    _page(conn)
    conn.execute("COMMIT")
    rows = _page(conn)
    assert rows == _fresh_page(make_conn)
    assert rows[0]["pair"] == '(a,1,"[0:1]={1,2}")'


def test_a_ddl_the_mark_could_not_record_is_seen_by_the_next_read(
        make_conn: Any, conn: Conn, world: None) -> None:
    """pgjobs._ddl_fence_mark runs as its owner and, when that owner may not
    write the marks (owners changed one object at a time), warns and lets
    the DDL go unfenced: the triggers are in place, no mark is left, no
    epoch moves (pgjobs.doctor's engine.ddl_fence reports it)."""
    other = make_conn()
    owner = scalar(conn, "SELECT current_user")
    stranger = f"pgjobs_shape_stranger_{PID}"
    conn.execute(f"CREATE ROLE {stranger} NOLOGIN")
    try:
        epoch = _epoch(conn)
        conn.execute(f"SET ROLE {CLIENT}")
        _page(conn)
        assert _kept(conn) is not None
        other.execute(f"ALTER FUNCTION pgjobs._ddl_fence_mark() OWNER TO {stranger}")
        other.execute("ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]")
        assert _epoch(other) == epoch
        rows = _page(conn)
        assert rows == _fresh_page(make_conn) and rows[0]["note"] == "[0:1]={1,2}"
    finally:
        conn.execute("RESET ROLE")
        other.execute(f'ALTER FUNCTION pgjobs._ddl_fence_mark() OWNER TO "{owner}"')
        conn.execute(f"DROP ROLE {stranger}")


DEEP = {
    # (the column, the DDL in another schema, the value then written)
    "composite_in_a_domain_over_an_array_in_a_composite_array": (
        "CREATE TYPE sc_elsewhere.inner AS (n int); "
        "CREATE DOMAIN sc_elsewhere.inner_list AS sc_elsewhere.inner[]; "
        "CREATE TYPE sc_elsewhere.outer AS (list sc_elsewhere.inner_list); "
        "ALTER TABLE sc_rows ADD COLUMN deep sc_elsewhere.outer[]",
        "ALTER TYPE sc_elsewhere.inner ADD ATTRIBUTE items int[] CASCADE",
        "ARRAY[ROW(ARRAY[ROW(1, '[0:1]={1,2}'::int[])::sc_elsewhere.inner]"
        "::sc_elsewhere.inner_list)::sc_elsewhere.outer]"),
    "a_tables_row_type": (
        "CREATE TABLE sc_elsewhere.holder (n int); "
        "ALTER TABLE sc_rows ADD COLUMN deep sc_elsewhere.holder",
        "ALTER TABLE sc_elsewhere.holder ADD COLUMN items int[]",
        "ROW(1, '[0:1]={1,2}'::int[])::sc_elsewhere.holder"),
}


@pytest.mark.parametrize("how", sorted(DEEP))
def test_a_change_deep_in_a_columns_type_in_another_schema_is_seen(
        make_conn: Any, conn: Conn, world: None, how: str) -> None:
    column, ddl, value = DEEP[how]
    conn.execute("CREATE SCHEMA sc_elsewhere")
    conn.execute(f"GRANT USAGE ON SCHEMA sc_elsewhere TO {CLIENT}")
    conn.execute(column)
    other = make_conn()
    conn.execute(f"SET ROLE {CLIENT}")
    _page(conn)
    assert _kept(conn) is not None
    other.execute(ddl)
    other.execute(f"UPDATE sc_rows SET deep = {value} WHERE id = 1")
    rows = _page(conn)
    assert rows == _fresh_page(make_conn)
    assert isinstance(rows[0]["deep"], str) and "[0:1]={1,2}" in rows[0]["deep"]


WALK_CALLS = ("SELECT coalesce(pg_stat_get_xact_function_calls("
              "'pgjobs._array_bounds_test(text, regtype, integer)'::regprocedure), 0)")


def _walks(conn: Conn) -> int:
    """A read's calls of pgjobs._array_bounds_test (the catalog walk), this
    session's counts (track_functions) before and after it. (The counts of
    a transaction not yet sent to the statistics stay in the next one's.)"""
    with conn.transaction():
        before = int(scalar(conn, WALK_CALLS))
        _page(conn)
        return int(scalar(conn, WALK_CALLS)) - before


def test_a_hit_skips_the_walk_and_a_miss_walks_again(
        make_conn: Any, conn: Conn, world: None) -> None:
    other = make_conn()
    conn.execute("SET track_functions = 'pl'")
    conn.execute(f"SET ROLE {CLIENT}")
    assert _walks(conn) > 0  # nothing kept yet
    assert _walks(conn) == 0  # the kept text
    other.execute("ALTER TABLE sc_rows ALTER COLUMN note TYPE int[] USING note::int[]")
    assert _walks(conn) > 0  # the epoch moved: walked again ...
    assert _page(conn) == _fresh_page(make_conn)  # ... to what a new session reads
    assert _walks(conn) == 0
