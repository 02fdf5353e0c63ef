"""A scope column whose domain has a CHECK (adversarial pass h3).

A value the domain's CHECK refuses is not a value of the scope column, as a
value its type cannot parse is not (pgjobs._canonical_scope): every entry
point refuses it with 22023 and a hint, never the raw 23514 of the cast.
And an entry of pgjobs.allowed_scopes that such a domain refuses (the
setting lists scopes of every target, so `0` may be one tenant of a plain
integer scope) allows nothing on that target and breaks nothing else: the
policy on pgjobs.jobs canonicalises every entry for every registered target,
so the raw 23514 failed every client read of pgjobs.jobs, every mask and
every cancel of the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import build_target, scalar

Conn = psycopg.Connection[Any]

# name: (declarations, scope type, a value it accepts, another spelling of it,
#        a value the CHECK refuses)
DOMAINS: dict[str, tuple[str, str, str, str, str]] = {
    "int check": ("CREATE DOMAIN dpos AS integer CHECK (VALUE > 0)", "dpos", "1", "01", "0"),
    "text check": ("CREATE DOMAIN dtenant AS text CHECK (VALUE ~ '^t-')", "dtenant",
                   "t-1", "t-1", "u-1"),
    "domain over a checked domain": ("CREATE DOMAIN dpos AS integer CHECK (VALUE > 0);"
                                     " CREATE DOMAIN ddpos AS dpos", "ddpos", "1", "+1", "-1"),
    "not null domain": ("CREATE DOMAIN dnn AS integer NOT NULL CHECK (VALUE <> 7)", "dnn",
                        "1", " 1", "7"),
}

CALLS = [
    "SELECT pgjobs.submit_delete('a', %(scope)s, '{}')",
    """SELECT pgjobs.submit_backfill('a', %(scope)s, '{}', '{"n": 1}')""",
    "SELECT pgjobs.submit_export('a', %(scope)s)",
    "SELECT pgjobs.submit('custom', 'a', %(scope)s)",
    "SELECT pgjobs.preview('a', %(scope)s)",
    "SELECT pgjobs.mask('a', %(scope)s)",
    "SELECT count(*) FROM pgjobs.visible('a', %(scope)s)",
    "SELECT pgjobs.visible_count('a', %(scope)s)",
    "SELECT pgjobs.channel('a', %(scope)s)",
]


def domain_target(conn: Conn, name: str) -> tuple[str, str]:
    declare, type_, good, _, bad = DOMAINS[name]
    conn.execute(declare)
    build_target(conn, "a", f"""id bigint NOT NULL, s {type_} NOT NULL, n int,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="s")
    conn.execute("INSERT INTO a (id, s) VALUES (1, %s), (2, %s)", (good, good))
    return good, bad


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_a_scope_the_domain_refuses_is_refused_with_a_hint(conn: Conn, name: str,
                                                           call: str) -> None:
    _, bad = domain_target(conn, name)
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute(call, {"scope": bad})
    assert "is not a valid" in str(exc.value) and exc.value.diag.message_hint
    assert scalar(conn, "SELECT count(*) FROM a") == 2


@pytest.fixture
def web(conn: Conn) -> Iterator[str]:
    role = f"pgjobs_test_h3web_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE pgjobs_client")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_an_entry_the_domain_refuses_allows_nothing_there_and_breaks_nothing(
        conn: Conn, web: str, name: str) -> None:
    good, bad = domain_target(conn, name)
    build_target(conn, "b", """id bigint NOT NULL, s text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="s")
    conn.execute("INSERT INTO b (id, s) VALUES (1, %s), (2, %s)", (bad, good))
    conn.execute(f"GRANT SELECT, DELETE ON a, b TO {web}")
    on_b = scalar(conn, "SELECT pgjobs.submit_delete('b', %s, '{\"id\": 1}')", (bad,))
    on_a = scalar(conn, "SELECT pgjobs.submit_delete('a', %s, '{\"id\": 1}')", (good,))
    conn.execute(f"SET ROLE {web}")
    # The tenant `bad` of b, and `good` of a, each as an entry that is not the
    # job's stored text (leading blanks are trimmed, inside quotes they stay):
    # the policy and the checks canonicalise every entry for every target.
    conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)",
                 (f'"{bad} ", {good}',))
    assert {r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs")} == {on_a}
    conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (f"{bad}, {good}",))
    assert {r[0] for r in conn.execute("SELECT id FROM pgjobs.jobs")} == {on_a, on_b}
    assert scalar(conn, "SELECT pgjobs.visible_count('b', %s)", (bad,)) == 0
    assert scalar(conn, "SELECT pgjobs.visible_count('a', %s)", (DOMAINS[name][3],)) == 1
    assert scalar(conn, "SELECT pgjobs.mask('a', %s)", (good,)) is not None
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (on_a,)) is True
    assert scalar(conn, "SELECT pgjobs.cancel(%s)", (on_b,)) is True
    # The refused entry allows no scope of a: a's scopes it is not.
    conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (bad,))
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 1
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT pgjobs.visible_count('a', %s)", (good,))


def test_an_exclusion_the_key_domain_refuses_is_refused_with_a_hint(conn: Conn) -> None:
    """The same rule for the keys of an exclude list: 22023, not 23514."""
    conn.execute("CREATE DOMAIN kpos AS bigint CHECK (VALUE > 0)")
    build_target(conn, "k", """id kpos NOT NULL, s int NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""",
                 scope="s")
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("SELECT pgjobs.submit_delete('k', '1', '{}', ARRAY['1', '0'])")
    assert "exclude" in str(exc.value) and exc.value.diag.message_hint
