"""Quoted entries in pgjobs.allowed_scopes (docs/operations.md "Tenancy").

The list was split on every comma: an application that put a tenant's raw
value `x,acme` into it allowed tenant `acme` too. An entry in double quotes
is now taken literally (commas, blanks and `""` for a quote inside), the one
parse is pgjobs._allowed_scopes_parse, and pgjobs.allowed_scopes_literal
builds a list that reads back as exactly its scopes. Unquoted entries read
as before (`x,acme` unquoted is still two entries), and a malformed list
allows nothing, in every consumer: submits, mask / visible / visible_count,
row-level security on pgjobs.jobs, cancel, channel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]

# Tenants of a text scope whose values a naive split would cut or trim.
SCOPES = ["x,acme", "acme", "x", " pad ", "pad", 'say "hi"', '"', "a,b,c", "a", "b", "c",
          "", "é,中", "x'y"]

CALLS = [
    "SELECT pgjobs.submit_delete('tt', %(scope)s, '{}')",
    """SELECT pgjobs.submit_backfill('tt', %(scope)s, '{}', '{"n": 1}')""",
    "SELECT pgjobs.submit_export('tt', %(scope)s)",
    "SELECT pgjobs.submit('custom', 'tt', %(scope)s)",
    "SELECT pgjobs.mask('tt', %(scope)s)",
    "SELECT count(*) FROM pgjobs.visible('tt', %(scope)s)",
    "SELECT pgjobs.visible_count('tt', %(scope)s)",
    "SELECT pgjobs.channel('tt', %(scope)s)",
]


def parse(conn: Conn, setting: str | None) -> tuple[list[str] | None, str | None]:
    row = conn.execute("SELECT entries, problem FROM pgjobs._allowed_scopes_parse(%s)",
                       (setting,)).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize(("setting", "entries"), [
    ('"x,acme"', ["x,acme"]),
    ('  "x,acme"  ', ["x,acme"]),
    ('"x,acme", acme', ["x,acme", "acme"]),
    ('acme ,"x,acme"', ["acme", "x,acme"]),
    ('" pad "', [" pad "]),
    ('"say ""hi"""', ['say "hi"']),
    ('""""', ['"']),
    ('""', [""]),
    ('"a,b,c" , "é,中",x\'y', ["a,b,c", "é,中", "x'y"]),
    ('"a"  ,  b  ,  "c"', ["a", "b", "c"]),
    # An unquoted empty entry names no tenant (it named ''): '""' does.
    ('"a",', ["a"]),
    ('"a",,""', ["a", ""]),
    ('"a", ,\t, ""', ["a", ""]),
    # A quote that does not open an entry is part of it, as it always was.
    ('O"Brien, acme', ['O"Brien', "acme"]),
    ('a "b", c', ['a "b"', "c"]),
])
def test_quoted_entries_are_taken_literally(conn: Conn, setting: str,
                                            entries: list[str]) -> None:
    assert parse(conn, setting) == (entries, None)


@pytest.mark.parametrize("setting", [
    "1", " 1 , 3 ", "x,acme", " x , acme ", "1,,2", ",", "a,", ",a", "a b", "\t1", "1\t",
    "1 ,\t2", "é,中", "x'y", "a\n,\nb", "  tenant-1  ",
])
def test_unquoted_lists_read_as_before(conn: Conn, setting: str) -> None:
    """Without a quote the list reads as the old split did (`x,acme` unquoted is
    two entries), except that an empty or blank entry is left out: `a,`, `,a`
    and `1,,2` allowed the empty-text tenant too. (Changed deliberately: the
    reference used to keep those empty entries.)"""
    before = scalar(conn, r"SELECT ARRAY(SELECT e FROM unnest(regexp_split_to_array("
                          r"btrim(%s), '\s*,\s*')) e WHERE e !~ '^\s*$')", (setting,))
    assert parse(conn, setting) == (before, None)
    assert parse(conn, "x,acme") == (["x", "acme"], None)


@pytest.mark.parametrize("setting", [None, "", "   "])
def test_unset_or_blank_restricts_nothing(conn: Conn, setting: str | None) -> None:
    assert parse(conn, setting) == (None, None)


MALFORMED = ['"x,acme', 'acme,"x', '"x" acme', '"x"acme, acme', 'acme, "x"y', '"a""',
             '"a"b"', '  "', 'acme, "x,acme']


@pytest.mark.parametrize("setting", MALFORMED)
def test_a_malformed_list_has_no_entries(conn: Conn, setting: str) -> None:
    entries, problem = parse(conn, setting)
    assert entries == []
    assert problem


@pytest.mark.parametrize("scopes", [
    ["x,acme"], ["x,acme", "acme"], [" pad "], ['say "hi"'], ['"'], ['""'], [""],
    ["a", "", "b"], ['"x,acme"'], ["é,中", "x'y"], [",", " , "], ['" ,"acme'],
])
def test_allowed_scopes_literal_reads_back_as_its_scopes(conn: Conn, scopes: list[str]) -> None:
    literal = scalar(conn, "SELECT pgjobs.allowed_scopes_literal(%s::text[])", (scopes,))
    assert parse(conn, literal) == (scopes, None)


@pytest.mark.parametrize("scopes", [None, [], ["a", None]])
def test_allowed_scopes_literal_refuses_an_empty_or_null_list(conn: Conn,
                                                              scopes: list[Any] | None) -> None:
    """An empty setting would mean no restriction: the opposite of no scope."""
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.allowed_scopes_literal(%s::text[])", (scopes,))


@pytest.fixture
def tt(conn: Conn) -> None:
    """A registered target with a text scope, one row per tenant of SCOPES."""
    conn.execute("""
        CREATE TABLE tt (id bigint NOT NULL, tenant text NOT NULL, n int,
                         created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour',
                         PRIMARY KEY (tenant, id));
        SELECT pgjobs.register_target('tt', 'id', 'tenant', 'created_at');""")
    for i, scope in enumerate(SCOPES):
        conn.execute("INSERT INTO tt (id, tenant, n) VALUES (%s, %s, 0)", (i, scope))


@pytest.fixture
def client(conn: Conn, tt: None) -> Iterator[str]:
    role = f"pgjobs_test_qclient_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} NOLOGIN")
    conn.execute(f"GRANT pgjobs_client TO {role}")
    conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON tt TO {role}")
    yield role
    conn.execute("RESET ROLE")
    conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def _allowed(conn: Conn, call: str, scope: str) -> bool:
    try:
        with conn.transaction():
            conn.execute(call, {"scope": scope})
        return True
    except errors.InsufficientPrivilege as exc:
        assert "allowed_scopes" in str(exc)
        return False


def _jobs(conn: Conn) -> dict[str, int]:
    """One custom job per tenant, submitted unrestricted (superuser)."""
    return {s: scalar(conn, "SELECT pgjobs.submit('custom', 'tt', %s)", (s,)) for s in SCOPES}


def _set(conn: Conn, setting: str) -> None:
    conn.execute("SELECT set_config('pgjobs.allowed_scopes', %s, false)", (setting,))


# (setting, the tenants it allows)
ALLOWS = [
    ('"x,acme"', {"x,acme"}),
    ("x,acme", {"x", "acme"}),                   # unquoted: two entries, as before
    ('"x,acme", acme', {"x,acme", "acme"}),
    ('"a,b,c"', {"a,b,c"}),
    ("a,b,c", {"a", "b", "c"}),
    ('" pad "', {" pad "}),
    (" pad ", {"pad"}),                          # unquoted entries are trimmed
    ('"say ""hi""", """"', {'say "hi"', '"'}),
    ('""', {""}),
    # An unquoted empty entry (a stray comma) allows nothing; only '""' is ''.
    ("acme,", {"acme"}),
    (",acme", {"acme"}),
    ("a,,b", {"a", "b"}),
    ("a, \t ,b", {"a", "b"}),
    (",", set()),
    (" , , ", set()),
    ('acme,""', {"acme", ""}),
    ('"acme",', {"acme"}),
    ('"é,中", x\'y', {"é,中", "x'y"}),
]


@pytest.mark.parametrize(("setting", "allows"), ALLOWS)
def test_every_consumer_reads_the_list_alike(conn: Conn, client: str, setting: str,
                                             allows: set[str]) -> None:
    jobs = _jobs(conn)
    conn.execute(f"SET ROLE {client}")
    _set(conn, setting)
    seen = {r[0] for r in conn.execute("SELECT scope FROM pgjobs.jobs")}
    assert seen == allows
    for call in CALLS:
        assert {s for s in SCOPES if _allowed(conn, call, s)} == allows, call
    for scope, job_id in jobs.items():
        if scope in allows:
            assert scalar(conn, "SELECT pgjobs.cancel(%s)", (job_id,)) is True
        else:
            with pytest.raises(errors.NoDataFound):  # hidden, as an unknown id
                conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))


@pytest.mark.parametrize("setting", MALFORMED)
def test_a_malformed_list_allows_nothing_anywhere(conn: Conn, client: str,
                                                  setting: str) -> None:
    jobs = _jobs(conn)
    conn.execute(f"SET ROLE {client}")
    _set(conn, setting)
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    for call in CALLS:
        for scope in SCOPES:
            with pytest.raises(errors.InsufficientPrivilege) as exc:
                conn.execute(call, {"scope": scope})
            assert "malformed" in str(exc.value)
            hint = exc.value.diag.message_hint or ""
            assert "double quotes" in hint and "allowed_scopes_literal" in hint
    for job_id in jobs.values():
        with pytest.raises(errors.NoDataFound):
            conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    # An administrator's session bypasses row security, not the setting.
    conn.execute("RESET ROLE")
    for job_id in jobs.values():
        with pytest.raises(errors.InsufficientPrivilege, match="malformed"):
            conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    conn.execute("RESET pgjobs.allowed_scopes")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs WHERE status = 'queued'") == len(jobs)


def test_custom_jobs_of_an_unregistered_table_compare_quoted_entries(conn: Conn,
                                                                     client: str) -> None:
    """Scopes of a table that is not registered compare as text: the
    policy's verbatim test and pgjobs._require_scope read the same entries."""
    conn.execute("CREATE TABLE custom_items (id bigint)")
    conn.execute(f"GRANT SELECT ON custom_items TO {client}")
    ids = {s: scalar(conn, "SELECT pgjobs.submit('custom', 'custom_items', %s)", (s,))
           for s in SCOPES}
    conn.execute(f"SET ROLE {client}")
    _set(conn, '"x,acme", " pad "')
    assert {r[0] for r in conn.execute("SELECT scope FROM pgjobs.jobs")} == {"x,acme", " pad "}
    _set(conn, '"x,acme')
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0
    assert len(ids) == len(SCOPES)


def test_the_application_builds_the_list_with_allowed_scopes_literal(conn: Conn,
                                                                     client: str) -> None:
    """The documented recipe: a tenant value with a comma allows that tenant
    only."""
    _jobs(conn)
    conn.execute(f"SET ROLE {client}")
    with conn.transaction():
        conn.execute("SELECT set_config('pgjobs.allowed_scopes', "
                     "pgjobs.allowed_scopes_literal(ARRAY[%s]), true)", ("x,acme",))
        assert [r[0] for r in conn.execute("SELECT scope FROM pgjobs.jobs")] == ["x,acme"]
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT pgjobs.submit_delete('tt', 'acme', '{}')")
