"""The hint of a destination or source outside the storage allow-list names a
`pgjobs.allow_storage(...)` call that works: the test runs the call it names and
then the very submit that was refused, which must now be taken. The class: the
hint quoted the URI's normal form, which allow_storage itself refuses for a root
folder (`file://`, from `--to file://./x/../../..` or `file:///data.csv`), named
the file rather than its folder for a source at the top of a bucket or host, and
named a folder holding a literal `{scope}`, which allow_storage reads as the
per-tenant placeholder (the call succeeded and allowed something else). Where no
call can admit the URI (an export to the root of a file system) the hint says
so and names none.
pgjobs._storage_allow_hint is the one place the call is worded; a source check
keeps it so."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import make_items, make_people, submit_export, submit_import

Conn = psycopg.Connection[Any]

CALL = re.compile(r"pgjobs\.allow_storage\('((?:[^']|'')*)'\)")
SQL = Path(__file__).resolve().parents[1] / "sql" / "functions"

DESTINATIONS = [
    "file:///", "file://localhost/", "file:///tmp", "file:///tmp/exports/",
    "file:///{scope}", "file:///tmp/{scope}/x", "file:///tmp/a{scope}b/c",
    "s3://bucket", "s3://bucket/", "s3://bucket/a/b", "s3://bucket/{scope}",
    "gs://bucket/x", "az://container", "az://container/p/{scope}/q",
    "memory://", "memory:///x", "memory://x/y",
]
NO_CALL = {"file:///", "file://localhost/"}
"""The root of a file system is a prefix of every file but no place to export to:
its normal form 'file://' is refused by pgjobs._normalize_uri, so no prefix admits
it and the worker has no folder to write in. The hint says so, and names no call."""
SOURCES = [
    "file:///data.csv", "file://localhost/data.csv", "file:///tmp/data.csv",
    "file:///tmp/in/rows.jsonl", "file:///{scope}/data.csv", "file:///a/{scope}.csv",
    "file:///tmp/{scope}/in/data.csv",
    "s3://bucket/data.csv", "s3://bucket/a/b/data.csv.gz", "s3://bucket/{scope}/d.csv",
    "gs://bucket/data.jsonl", "az://container/d.csv", "az://container/{scope}/x/y.csv",
    "https://example.com/data.csv", "https://example.com:8443/a/b/data.csv",
    "HTTPS://Example.COM/data.csv",
]


def _hint(exc: pytest.ExceptionInfo[errors.InsufficientPrivilege]) -> str:
    hint = exc.value.diag.message_hint
    assert hint is not None
    return hint


def _allow_from_hint(conn: Conn, hint: str) -> str:
    """Run the allow_storage call the hint names (exactly one), as an
    administrator would copy it; returns its argument."""
    calls = CALL.findall(hint)
    assert len(calls) == 1, hint
    prefix = calls[0].replace("''", "'")
    conn.execute("SELECT pgjobs.allow_storage(%s)", (prefix,))  # raises if refused
    return prefix


@pytest.mark.parametrize("destination", DESTINATIONS)
@pytest.mark.parametrize("scope", ["1", "2"])
def test_an_export_hint_names_a_call_that_admits_it(conn: Conn, destination: str,
                                                    scope: str) -> None:
    make_items(conn, rows=3)
    options = {"destination": destination}
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        submit_export(conn, scope, options=options)
    hint = _hint(refused)
    if destination in NO_CALL:
        assert not CALL.search(hint), hint
        assert hint.startswith("No pgjobs.allow_storage call can allow 'file://', the root of "
                               "the worker's file system: choose a folder below it"), hint
        return
    prefix = _allow_from_hint(conn, hint)
    assert "{scope}" not in prefix
    assert submit_export(conn, scope, options=options) > 0


@pytest.mark.parametrize("source", SOURCES)
def test_an_import_hint_names_a_call_that_admits_it(conn: Conn, source: str) -> None:
    make_people(conn)
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        submit_import(conn, source)
    hint = _hint(refused)
    prefix = _allow_from_hint(conn, hint)
    assert "its folder" in hint
    assert "{scope}" not in prefix
    assert submit_import(conn, source) > 0


@pytest.mark.parametrize("uri, call", [
    ("file:///data.csv", "pgjobs.allow_storage('file:///')"),
    ("s3://bucket/data.csv", "pgjobs.allow_storage('s3://bucket')"),
    ("https://example.com/data.csv", "pgjobs.allow_storage('https://example.com')"),
    ("file:///tmp/data.csv", "pgjobs.allow_storage('file:///tmp')"),
])
def test_a_source_names_its_folder_and_a_root_folder_says_what_it_opens(
        conn: Conn, uri: str, call: str) -> None:
    """Never the file itself (allowing 's3://bucket/data.csv' admits only that
    object and whatever is named below it); a root folder says how much it allows."""
    make_people(conn)
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        submit_import(conn, uri)
    hint = _hint(refused)
    assert call in hint, hint
    root = call.count("/") <= 3 and not call.endswith("/tmp')")
    assert ("better move the file into a folder of its own" in hint) == root, hint


def test_no_other_hint_words_an_allow_storage_call() -> None:
    """Every hint that names an allow_storage call gets it from
    pgjobs._storage_allow_hint: a second place would drift from what
    allow_storage accepts."""
    offenders = [path.name for path in sorted(SQL.glob("*.sql"))
                 if path.name != "_storage_allow_hint.sql"
                 and re.search(r"allow_storage\(%", path.read_text())]
    assert offenders == []
    callers = [path.name for path in sorted(SQL.glob("*.sql"))
               if "pgjobs._storage_allow_hint(" in path.read_text()]
    assert {"_submit_export_as.sql", "_submit_import_as.sql"} <= set(callers)
