"""The CLI's TARGET type (pgjobs.cli.common.target_name_parts) judges a table
name as PostgreSQL's regclass input does: every name PostgreSQL parses (it
may then not find the table: 42P01, 3F000, 0A000 for another database) the
CLI lets through, every one it refuses as syntax (42602, 42601 for too many
dots) the CLI refuses as a usage error before connecting.

Each name is tried on the server itself, so a difference in either
direction fails. One deliberate difference: "" (an empty quoted name), which
PostgreSQL parses and no table can have (CREATE TABLE refuses it): the CLI
refuses it at once.

Found: a vertical tab was a blank to the CLI and is part of a name to
PostgreSQL (scanner_isspace): a table named a<VT>b was refused as "not a
table name". The other names are lock-in (quotes, dots inside quotes, doubled
quotes, unicode, mixed case, blanks around dots, names past 63 bytes, which
PostgreSQL truncates).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgjobs.cli.common import target_name_parts

NAMES = [
    "items", "public.items", '"My Items"', '"a.b"', '"a""b"', 'a"b"', "É", "MiXed",
    " a . b ", "a\vb", "a\u00a0b", "a\u2003b", "x" * 70, '"' + "é" * 40 + '"', "a.b.c",
    '"a".b', 'a."b.c"', "a;drop", "a'b", "a$b", "$1", "\fa\r.\nb\t",
    # refused by both
    '"a"b', "a..b", "", '"', "a.", ".a", "a.b.c.d", '"a" "b"', "a b", '"unterminated',
    "a\tb", "a\nb.c", "a\rb", "a\fb",
]
SYNTAX = {"42602", "42601"}


@pytest.fixture(scope="module")
def server(cluster_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(cluster_url, autocommit=True) as conn:
        yield conn


@pytest.mark.parametrize("name", NAMES, ids=[repr(n)[1:-1][:30] for n in NAMES])
def test_target_type_parses_as_postgresql(server: psycopg.Connection[tuple[object, ...]],
                                          name: str) -> None:
    try:
        server.execute("SELECT %s::regclass", (name,))
        state = None
    except psycopg.Error as exc:
        state = exc.sqlstate
    postgres_parses = state not in SYNTAX
    parts = target_name_parts(name)
    assert (parts is not None and len(parts) <= 3) == postgres_parses, (state, parts)


def test_empty_quoted_name_is_refused_though_postgresql_parses_it(
        server: psycopg.Connection[tuple[object, ...]]) -> None:
    with pytest.raises(psycopg.Error) as parsed:
        server.execute("""SELECT '""'::regclass""")
    assert parsed.value.sqlstate not in SYNTAX  # parsed, not found
    with pytest.raises(psycopg.Error) as created:
        server.execute('CREATE TEMP TABLE "" (x int)')
    assert created.value.sqlstate in SYNTAX
    assert target_name_parts('""') is None
