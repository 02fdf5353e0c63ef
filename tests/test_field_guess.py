"""The typo guard's hint names the document field a refused path probably
means (pgjobs._field_guess), at the submit and at a deferred check.

The guard refused `{"stauts": {"$ne": "keep"}}` but its hint said only "check
the spelling": it named a likely meaning for a column in another case or the
document column as a prefix, never for a document field of the rows. Tested as
a class: another case, an invisible character (zero-width space, BOM, soft
hyphen), full-width letters, a decomposed accent, a swap of neighbours, a
wrong, missing or extra letter, at the top and nested, for every submit kind,
and a name nothing is close to (no guess). A character a reader cannot see is
shown as its code point.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support import job, make_rows_target, scalar

Conn = psycopg.Connection[Any]

KINDS = ["delete", "backfill", "export"]

# (written, meant, how the written name is shown in the hint)
SLIPS = [
    ("Status", "status", "Status"),
    ("STATUS", "status", "STATUS"),
    ("sta\u200btus", "status", "sta<U+200B>tus"),
    ("sta\u200dtus", "status", "sta<U+200D>tus"),
    ("sta\u00adtus", "status", "sta<U+00AD>tus"),
    ("\uff53\uff54\uff41\uff54\uff55\uff53", "status",
     "<U+FF53><U+FF54><U+FF41><U+FF54><U+FF55><U+FF53>"),
    ("cafe\u0301", "caf\u00e9", "cafe<U+0301>"),
    ("stauts", "status", "stauts"),
    ("statsu", "status", "statsu"),
    ("stqtus", "status", "stqtus"),
    ("stats", "status", "stats"),
    ("statuss", "status", "statuss"),
    ("profile.emial", "profile.email", "profile.emial"),
    ("profile.Email", "profile.email", "profile.Email"),
    ("profile.email_adress", "profile.email_address", "profile.email_adress"),
]


def plain(name: str) -> str:
    """A name as a hint prints it: outside printable ASCII (and the quote), code points."""
    return "".join(c if " " <= c <= "~" and c != '"' else f"<U+{ord(c):04X}>" for c in name)


@pytest.fixture
def rows(conn: Conn) -> Conn:
    make_rows_target(conn)
    conn.execute(
        "INSERT INTO user_table_rows (table_id, n, label, data) SELECT 1, g, 'x', "
        "jsonb_build_object('status', 'keep', 'caf\u00e9', 1, 'profile', "
        "jsonb_build_object('email', 'a@b', 'email_address', 'a@b')) "
        "FROM generate_series(1, 20) g")
    return conn


def refusal(conn: Conn, kind: str, filter_: dict[str, Any]) -> psycopg.Error:
    args = (json.dumps(filter_),)
    sql = {"delete": "SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb)",
           "backfill": "SELECT pgjobs.submit_backfill('user_table_rows', '1', %s::jsonb, "
                       "'{\"label\": \"y\"}')",
           "export": "SELECT pgjobs.submit_export('user_table_rows', '1', %s::jsonb)"}[kind]
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql, args)
    assert caught.value.sqlstate == "22023", caught.value
    return caught.value


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("written", "meant", "shown"), SLIPS, ids=[s[2] for s in SLIPS])
def test_the_hint_names_the_field_meant(rows: Conn, kind: str, written: str, meant: str,
                                        shown: str) -> None:
    for filter_ in ({written: {"$ne": "keep"}},
                    {"$or": [{"status": "gone"}, {"$not": {written: None}}]}):
        hint = refusal(rows, kind, filter_).diag.message_hint or ""
        assert f'Did you mean document field "{plain(meant)}", not "{shown}"?' in hint, hint
        assert "allow_unknown_fields" in hint


def test_an_export_column_is_named_too(rows: Conn) -> None:
    with pytest.raises(psycopg.Error) as caught:
        rows.execute("SELECT pgjobs.submit_export('user_table_rows', '1', '{}', "
                     "'{\"columns\": [\"id\", \"stauts\"]}')")
    assert 'Did you mean document field "status", not "stauts"?' in (
        caught.value.diag.message_hint or "")


@pytest.mark.parametrize("written", ["zzz", "x", "nothing_like_it", "profile.zz", "st"])
def test_no_guess_when_nothing_is_close(rows: Conn, written: str) -> None:
    hint = refusal(rows, "delete", {written: 1}).diag.message_hint or ""
    assert "Did you mean" not in hint and "Check the spelling" in hint, hint


def test_a_deferred_check_names_the_field_meant(rows: Conn) -> None:
    # The scope had no rows at the submit; the failure at the job's start
    # names the field the rows that came have.
    typo = scalar(rows, "SELECT pgjobs.submit_delete('user_table_rows', '7', %s::jsonb)",
                  (json.dumps({"sta\u200btus": {"$ne": "keep"}}),))
    rows.execute("INSERT INTO user_table_rows (table_id, n, label, data, created_at) "
                 "VALUES (7, 1, 'keep', '{\"status\": \"keep\"}', '2001-01-01')")
    rows.execute("CALL pgjobs.run_job(%s)", (typo,))
    row = job(rows, typo)
    assert row["status"] == "failed", row
    assert 'Did you mean document field "status", not "sta<U+200B>tus"?' in row["error"]
    assert scalar(rows, "SELECT count(*) FROM user_table_rows WHERE table_id = 7") == 1


# (a key of the rows, how the hint must show it): the name meant comes from
# the rows, and was printed raw: a key with an invisible character read exactly
# like the name written ('Did you mean "status", not "status"?'), and a newline
# or a quote in one wrote lines or quotes of its own into the hint.
ROW_KEYS = [
    ("sta\u200btus", "sta<U+200B>tus", "status"),
    ("stat\nus", "stat<U+000A>us", "statxus"),
    ('sta"tus', "sta<U+0022>tus", "status"),
    ("stat\u001bus", "stat<U+001B>us", "statxus"),
]


@pytest.mark.parametrize(("key", "shown", "written"), ROW_KEYS, ids=[k[1] for k in ROW_KEYS])
def test_the_field_meant_is_shown_as_plainly_as_the_one_written(
        conn: Conn, key: str, shown: str, written: str) -> None:
    make_rows_target(conn)
    conn.execute("INSERT INTO user_table_rows (table_id, n, label, data) "
                 "SELECT 1, g, 'x', jsonb_build_object(%s::text, 1) FROM generate_series(1, 5) g",
                 (key,))
    hint = refusal(conn, "delete", {written: 1}).diag.message_hint or ""
    assert f'Did you mean document field "{shown}", not "{written}"?' in hint, hint
    assert "\n" not in hint and "\u200b" not in hint and "\u001b" not in hint, hint
