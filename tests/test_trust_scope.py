"""One tenant, one scope, whatever its spelling (issue 9, item 4).

A registered target's scope is canonicalised (cast to the scope column's
full type and printed back, pgjobs._canonical_scope) at every entry point,
and pgjobs.jobs.scope stores the canonical text. So '1', '01', ' 1' and
'+1' of an integer scope are one tenant for the mask, visible,
visible_count, on_conflict, the writers' gate, cancel and allowed_scopes.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import errors

from tests.support import build_target, claim, scalar

Conn = psycopg.Connection[Any]

# (scope type, spellings of one value, a spelling of another value).
SPELLINGS: list[tuple[str, list[str], str]] = [
    ("integer", ["1", "01", " 1", "+1", "1 "], "2"),
    ("bigint", ["7", "007", " +7 ", "7"], "70"),
    ("numeric", ["1", "1.0", "01.00", "+1.000", "1e0"], "1.01"),
    ("numeric(6,2)", ["1.5", "1.50", "01.5", "+1.500"], "1.51"),
    ("uuid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
              "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11"],
     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"),
    ("date", ["2030-01-02", "2030-1-2", "20300102", " 2030-01-02 "], "2030-01-03"),
    ("timestamptz", ["2030-01-02 00:00:00+00", "2030-01-02T01:00:00+01:00",
                     "2030-01-01 19:00:00-05", "2030-01-02 00:00:00.000000Z"],
     "2030-01-02 00:00:01+00"),
    ("character(4)", ["ab", "ab ", "ab  "], "abc"),
    ("double precision", ["0.5", "0.50", "5e-1", ".5"], "0.51"),
    ("interval", ["1 day", "24 hours", "1440 minutes"], "25 hours"),
]
IDS = [t for t, _, _ in SPELLINGS]


def make_table(conn: Conn, scope_type: str, one: str, other: str) -> None:
    build_target(conn, "t", f"""id bigint NOT NULL, s {scope_type} NOT NULL, n int,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                 PRIMARY KEY (s, id)""", scope="s", index=None)
    conn.execute("INSERT INTO t (id, s) SELECT g, %s FROM generate_series(1, 6) g", (one,))
    conn.execute("INSERT INTO t (id, s) SELECT g, %s FROM generate_series(1, 4) g", (other,))


@pytest.mark.parametrize(("scope_type", "spellings", "other"), SPELLINGS, ids=IDS)
def test_a_delete_masks_the_tenant_in_every_spelling(conn: Conn, scope_type: str,
                                                     spellings: list[str], other: str) -> None:
    make_table(conn, scope_type, spellings[0], other)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('t', %s)", (spellings[1],))
    stored = scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (job_id,))
    for spelling in spellings:
        assert scalar(conn, "SELECT pgjobs.visible_count('t', %s)", (spelling,)) == 0, spelling
        assert scalar(conn, "SELECT count(*) FROM pgjobs.visible('t', %s)", (spelling,)) == 0
        assert scalar(conn, "SELECT pgjobs.mask('t', %s)", (spelling,)) != "true"
        # Every spelling submits the same canonical scope.
        again = scalar(conn, "SELECT pgjobs.submit_delete('t', %s)", (spelling,))
        assert scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (again,)) == stored
    assert scalar(conn, "SELECT pgjobs.visible_count('t', %s)", (other,)) == 4
    assert scalar(conn, "SELECT pgjobs.mask('t', %s)", (other,)) == "true"


@pytest.mark.parametrize(("scope_type", "spellings", "other"), SPELLINGS, ids=IDS)
def test_on_conflict_reject_and_the_gate_see_one_tenant(conn: Conn, scope_type: str,
                                                        spellings: list[str], other: str) -> None:
    make_table(conn, scope_type, spellings[0], other)
    first = scalar(conn, "SELECT pgjobs.submit_delete('t', %s)", (spellings[0],))
    for spelling in spellings[1:]:
        with pytest.raises(errors.ObjectInUse):
            conn.execute("""SELECT pgjobs.submit_backfill('t', %s, '{}', '{"n": 1}',
                                                          '{"on_conflict": "reject"}')""",
                         (spelling,))
    second = scalar(conn, "SELECT pgjobs.submit_delete('t', %s)", (spellings[-1],))
    scalar(conn, """SELECT pgjobs.submit_delete('t', %s, '{}', '{}',
                                                '{"on_conflict": "reject"}')""", (other,))
    # Two writers of one tenant never run at once: one claim takes the first
    # and the other tenant's writer, never the second.
    claimed = claim(conn, "w1", ["delete"], limit=10)
    assert first in claimed and second not in claimed and len(claimed) == 2
    assert claim(conn, "w2", ["delete"], limit=10) == []


@pytest.mark.parametrize(("scope_type", "spellings", "other"), SPELLINGS, ids=IDS)
def test_allowed_scopes_and_cancel_see_one_tenant(conn: Conn, scope_type: str,
                                                  spellings: list[str], other: str) -> None:
    make_table(conn, scope_type, spellings[0], other)
    mine = scalar(conn, "SELECT pgjobs.submit_delete('t', %s)", (spellings[0],))
    theirs = scalar(conn, "SELECT pgjobs.submit_delete('t', %s)", (other,))
    for allowed in spellings:
        conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)",
                     (f"nothing,{allowed}",))
        for spelling in spellings:
            assert scalar(conn, "SELECT pgjobs.visible_count('t', %s)", (spelling,)) == 0
            conn.execute("SELECT pgjobs.mask('t', %s)", (spelling,))
        # The other tenant stays denied, in every spelling of its value.
        for call in ["SELECT pgjobs.visible_count('t', %s)", "SELECT pgjobs.mask('t', %s)",
                     "SELECT pgjobs.submit_delete('t', %s)"]:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(call, (other,))
            # (a padded uuid is no uuid at all: refused as invalid instead)
            with pytest.raises((errors.InsufficientPrivilege, errors.InvalidParameterValue)):
                conn.execute(call, (f" {other} ",))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT pgjobs.cancel(%s)", (theirs,))
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (mine,)) is True
    conn.execute("RESET pgjobs.allowed_scopes")
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (theirs,)) == "queued"


def test_invalid_spellings_are_refused_with_a_hint(conn: Conn) -> None:
    make_table(conn, "integer", "1", "2")
    for bad in ["1.0", "one", "", "1 1", "99999999999"]:
        with pytest.raises(errors.InvalidParameterValue) as exc:
            conn.execute("SELECT pgjobs.submit_delete('t', %s)", (bad,))
        assert exc.value.diag.message_hint
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SELECT pgjobs.visible_count('t', %s)", (bad,))
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SELECT pgjobs.mask('t', %s)", (bad,))
    # An allowed_scopes entry that is not a value of the scope allows nothing.
    conn.execute("SET pgjobs.allowed_scopes = 'one, 1.0'")
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.visible_count('t', '1')")


def test_canonical_scope_does_not_depend_on_the_session(conn: Conn, make_conn: Any) -> None:
    """The stored scope of a timestamptz or float tenant is the same text
    whatever the submitter's TimeZone, DateStyle or extra_float_digits."""
    make_table(conn, "timestamptz", "2030-01-02 00:00+00", "2030-01-03 00:00+00")
    texts = set()
    for tz, style, digits in [("UTC", "ISO, MDY", "1"), ("Pacific/Kiritimati", "SQL, DMY", "0"),
                              ("America/Adak", "German", "-15")]:
        other = make_conn()
        other.execute(f"SET TimeZone = '{tz}'")
        other.execute(f"SET DateStyle = '{style}'")
        other.execute(f"SET extra_float_digits = {digits}")
        job_id = scalar(other, "SELECT pgjobs.submit_delete('t', '2030-01-02 00:00:00+00')")
        texts.add(scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (job_id,)))
        assert scalar(other, "SELECT pgjobs.visible_count('t', '2030-01-02 00:00:00+00')") == 0
    assert len(texts) == 1


def test_custom_kinds_on_unregistered_tables_keep_their_text(conn: Conn) -> None:
    conn.execute("CREATE TABLE free (id bigint)")
    job_id = scalar(conn, "SELECT pgjobs.submit('custom', 'free', ' 01 ')")
    assert scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (job_id,)) == " 01 "


def test_custom_kinds_on_registered_tables_store_the_canonical_scope(conn: Conn) -> None:
    make_table(conn, "integer", "1", "2")
    job_id = scalar(conn, "SELECT pgjobs.submit('custom', 't', ' 01 ')")
    assert scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "1"
    # A writing kind too (pgjobs.submit takes none since they are pgjobs' own:
    # the one place it passes, pgjobs._insert_job), which the gate then holds.
    job_id = scalar(conn, "SELECT (pgjobs._insert_job('import', 't', ' 01 ', '{}', '{}')).id")
    assert scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (job_id,)) == "1"
    with pytest.raises(errors.ObjectInUse):
        conn.execute("""SELECT pgjobs.submit_delete('t', '+1', '{}', '{}',
                                                    '{"on_conflict": "reject"}')""")


FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _spell_int(n: int, zeros: int, plus: bool, pad: str) -> str:
    digits = "0" * zeros + str(abs(n))
    sign = "-" if n < 0 else ("+" if plus else "")
    return f"{pad}{sign}{digits}{pad}"


@FUZZ
@given(n=st.integers(-10**6, 10**6), zeros=st.integers(0, 4), plus=st.booleans(),
       pad=st.sampled_from(["", " ", "  ", "\t"]))
def test_fuzz_integer_spellings_are_one_tenant(conn: Conn, n: int, zeros: int, plus: bool,
                                               pad: str) -> None:
    if not scalar(conn, "SELECT count(*) FROM pg_class WHERE relname = 'fz'"):
        conn.execute("""CREATE TABLE fz (id bigint NOT NULL, s integer NOT NULL,
                                         created_at timestamptz NOT NULL, PRIMARY KEY (s, id));
                        SELECT pgjobs.register_target('fz', 'id', 's', 'created_at');""")
    spelled = _spell_int(n, zeros, plus, pad)
    job_id = scalar(conn, "SELECT pgjobs.submit_delete('fz', %s)", (spelled,))
    assert scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (job_id,)) == str(n)
    assert scalar(conn, "SELECT pgjobs.mask('fz', %s)", (str(n),)) != "true"
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))


@FUZZ
@given(x=st.floats(allow_nan=False, allow_infinity=False, width=64),
       digits=st.sampled_from(["-15", "0", "1", "3"]),
       style=st.sampled_from(["ISO, YMD", "SQL, DMY", "German", "Postgres, MDY"]))
def test_fuzz_typed_literals_read_back_exactly(conn: Conn, x: float, digits: str,
                                               style: str) -> None:
    """A float filter value or key, written as a typed literal in any session,
    reads back as exactly the same double in any other."""
    conn.execute(f"SET extra_float_digits = {digits}")
    conn.execute(f"SET DateStyle = '{style}'")
    literal = scalar(conn, "SELECT pgjobs._typed_literal(%s, 'double precision')", (repr(x),))
    conn.execute("SET extra_float_digits = 3")
    conn.execute("RESET DateStyle")
    assert scalar(conn, f"SELECT {literal} = %s::float8", (repr(x),)) is True
    stamp = scalar(conn, "SELECT pgjobs._typed_literal(%s, 'timestamptz')",
                   ("2030-01-02 03:04:05.123456+00",))
    assert scalar(conn, f"SELECT {stamp} = timestamptz '2030-01-02 03:04:05.123456+00'") is True


def test_the_upgrade_canonicalises_the_scopes_of_pending_jobs(conn: Conn) -> None:
    """Jobs queued before migration 0008 hold the scope as spelled ('01'):
    its DO block brings them to the canonical form the mask and gate use."""
    from pgjobs.migrate import sql_dir

    make_table(conn, "integer", "1", "2")
    conn.execute("CREATE TABLE c (id bigint NOT NULL, s character(4) NOT NULL, "
                 "created_at timestamptz NOT NULL, PRIMARY KEY (s, id))")
    conn.execute("SELECT pgjobs.register_target('c', 'id', 's', 'created_at')")
    ids = [scalar(conn, "SELECT pgjobs.submit_delete('t', '1')"),
           scalar(conn, "SELECT pgjobs.submit_delete('c', 'ab')"),
           scalar(conn, "SELECT pgjobs.submit_delete('t', '2')")]
    conn.execute("UPDATE pgjobs.jobs SET scope = ' 01' WHERE id = %s", (ids[0],))
    conn.execute("UPDATE pgjobs.jobs SET scope = 'ab  ' WHERE id = %s", (ids[1],))
    conn.execute("UPDATE pgjobs.jobs SET scope = '2', status = 'succeeded', "
                 "finished_at = now() WHERE id = %s", (ids[2],))
    text = (sql_dir() / "migrations" / "0008.scope_identity.sql").read_text()
    conn.execute(text[text.index("DO $migrate$"):])  # type: ignore[arg-type]
    assert [scalar(conn, "SELECT scope FROM pgjobs.jobs WHERE id = %s", (i,))
            for i in ids] == ["1", "ab", "2"]
    assert scalar(conn, "SELECT pgjobs.visible_count('t', '1')") == 0
