"""A product team's everyday work under max_item_bytes_per_client, and what
the client reads when it hits the ceiling (h142).

Found: every refusal of the ceiling (pgjobs._keep_client_bytes, the one
count of payloads, exclude lists and fan-out items) said what the client
would keep after the call and the ceiling, but neither what it keeps
already nor the room left: a client at 380,718 bytes of a 10,000 ceiling
read "would keep 381,633 bytes" and had to work out that nothing of it was
left, and the setting was named in the hint only. Now the message says
what the call adds and of what, what the client keeps, the room left and
the setting, on every path (submits of every kind, a delete's long exclude
list, submit_items, add_items, the command line). Checked with them: the
everyday work that must never be refused at the default ceiling, the total
equal to what the client's jobs count after each step, the room back after
prune, and a ceiling lowered below a client's total refusing additions
only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors
from psycopg.conninfo import make_conninfo

from pgjobs.cli.main import main
from tests.support import make_rows_target, run_job, scalar, seed
from tests.support.roles import drop_role, kept_total, make_role, scalar_as

Conn = psycopg.Connection[Any]
SETTING = 'pgjobs.set_defaults(\'{"max_item_bytes_per_client": N}\')'


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    seed(conn, make_rows_target(conn), 1500)
    role = make_role(conn, "kbday", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, INSERT, UPDATE, DELETE ON user_table_rows TO {role}")
    yield role
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
    drop_role(conn, role)


def _keys(conn: Conn, scope: int, count: int) -> list[str]:
    return [str(r[0]) for r in conn.execute(
        "SELECT id FROM user_table_rows WHERE table_id = %s ORDER BY id LIMIT %s",
        (scope, count)).fetchall()]


LONG_FILTER = json.dumps({"$or": [{"label": f"label {i}"} for i in range(300)]})
BIG_SET = json.dumps({"label": "z" * 20000})
ITEMS = json.dumps([{"i": i, "pad": "p" * 50} for i in range(2000)])


def test_everyday_work_at_the_default_ceiling_is_never_refused_and_counted_exactly(
        conn: Conn, client: str) -> None:
    keys = _keys(conn, 1, 400)
    steps: list[tuple[str, str, Any]] = [
        ("delete", "SELECT pgjobs.submit_delete('user_table_rows', '1', %s::jsonb, %s)",
         (LONG_FILTER, keys)),
        ("backfill", "SELECT pgjobs.submit_backfill('user_table_rows', '2', '{}'::jsonb, "
                     "%s::jsonb)", (BIG_SET,)),
        ("export", "SELECT pgjobs.submit_export('user_table_rows', '3', %s::jsonb, %s::jsonb)",
         (LONG_FILTER, json.dumps({"columns": ["id", "n", "label", "table_id", "created_at",
                                               "data"], "format": "csv"}))),
        ("items", "SELECT pgjobs.submit_items('resize', 'user_table_rows', '1', %s::jsonb)",
         (ITEMS,)),
    ]
    ids: dict[str, int] = {}
    before = kept_total(conn, client)
    for name, sql, params in steps:
        ids[name] = int(scalar_as(conn, client, sql, params))
        after = kept_total(conn, client)
        assert after > before, name  # each of these keeps more than 4 KiB
        before = after
    assert scalar_as(conn, client, "SELECT pgjobs.add_items(%s, %s::jsonb)", (ids["items"], ITEMS))
    assert kept_total(conn, client) > before
    before = kept_total(conn, client)
    # Cancel, retry, pause, resume and running add nothing; a resubmit
    # counts its own job.
    assert scalar_as(conn, client, "SELECT pgjobs.cancel(%s)", (ids["backfill"],))
    assert scalar_as(conn, client, "SELECT pgjobs.retry(%s)", (ids["backfill"],))
    assert scalar_as(conn, client, "SELECT pgjobs.pause(%s)", (ids["delete"],))
    assert scalar_as(conn, client, "SELECT pgjobs.resume(%s)", (ids["delete"],))
    assert kept_total(conn, client) == before
    run_job(conn, ids["delete"])
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (ids["delete"],)) \
        == "succeeded"
    assert kept_total(conn, client) == before
    assert scalar_as(conn, client, "SELECT pgjobs.cancel(%s)", (ids["backfill"],))
    again = int(scalar_as(conn, client, steps[1][1], steps[1][2]))
    assert kept_total(conn, client) == before + int(scalar(
        conn, "SELECT kept_bytes FROM pgjobs.jobs WHERE id = %s", (again,)))
    # Pruned, every byte comes back.
    conn.execute("UPDATE pgjobs.jobs SET status = CASE WHEN status IN ('queued', 'running', "
                 "'paused') THEN 'canceled' ELSE status END, "
                 "finished_at = now() - interval '2 days' WHERE submitted_by = %s", (client,))
    conn.execute("SELECT pgjobs.prune('1 day')")
    assert kept_total(conn, client) == 0


PATHS: dict[str, tuple[str, str]] = {
    # path: (the call, what the error says was counted)
    "submit": ("SELECT pgjobs.submit('kb_kind', 'user_table_rows', '1', "
               "jsonb_build_object('pad', repeat('y', 6000)))", "payload"),
    "backfill": ("SELECT pgjobs.submit_backfill('user_table_rows', '2', '{}'::jsonb, "
                 "jsonb_build_object('label', repeat('z', 6000)))", "payload"),
    "export": (f"SELECT pgjobs.submit_export('user_table_rows', '3', '{LONG_FILTER}'::jsonb)",
               "payload"),
    "delete_filter": (f"SELECT pgjobs.submit_delete('user_table_rows', '1', "
                      f"'{LONG_FILTER}'::jsonb)", "payload"),
    "delete_exclude": ("SELECT pgjobs.submit_delete('user_table_rows', '1', '{}'::jsonb, "
                       "(SELECT array_agg(id::text) FROM (SELECT id FROM user_table_rows "
                       "WHERE table_id = 1 ORDER BY id LIMIT 300) k))", "an exclude list"),
    "submit_items": ("SELECT pgjobs.submit_items('resize', 'user_table_rows', '1', "
                     "'[1, 2, 3]')", "fan-out items"),
    "add_items": ("SELECT pgjobs.add_items({job}, '[1, 2, 3]')", "fan-out items"),
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_refusal_says_what_was_counted_the_room_left_and_what_to_do(
        conn: Conn, client: str, path: str) -> None:
    parent = int(scalar_as(conn, client, "SELECT pgjobs.submit_items('resize', 'user_table_rows', "
                                         "'1', %s::jsonb)", (json.dumps(["x" * 500]),)))
    kept = kept_total(conn, client)
    ceiling = kept + 2  # room for 2 bytes: every path's call adds more
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)",
                 (json.dumps({"max_item_bytes_per_client": ceiling}),))
    call, what = PATHS[path]
    with pytest.raises(errors.ObjectInUse) as caught:
        scalar_as(conn, client, call.replace("{job}", str(parent)))
    diag = caught.value.diag
    message, hint = diag.message_primary or "", diag.message_hint or ""
    added = re.search(r"\((\d+) bytes of (.+?) added to (job \d+|the job being submitted);",
                      message)
    assert added, message
    assert added.group(2) == what, message
    # A submit's job is rolled back with the refusal: no id that never
    # exists; an addition names the job kept already (h146).
    assert added.group(3) == (f"job {parent}" if path == "add_items"
                              else "the job being submitted"), message
    assert f"it keeps {kept} bytes now, 2 left" in message, message
    assert f"would keep {kept + int(added.group(1))} bytes" in message, message
    assert f"at most {ceiling} bytes" in message and "max_item_bytes_per_client" in message
    assert "pgjobs.prune" in hint and SETTING in hint and f"(now {ceiling})" in hint, hint
    assert kept_total(conn, client) == kept  # nothing written


def test_a_ceiling_lowered_below_a_clients_total_refuses_additions_only(
        conn: Conn, client: str) -> None:
    delete = int(scalar_as(conn, client, "SELECT pgjobs.submit_delete('user_table_rows', '1', "
                                         "%s::jsonb)", (LONG_FILTER,)))
    items = int(scalar_as(conn, client, "SELECT pgjobs.submit_items('resize', 'user_table_rows', "
                                        "'2', %s::jsonb)", (ITEMS,)))
    kept = kept_total(conn, client)
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": 100}')")
    # What adds nothing goes on: small submits, pause, resume, retry, a run.
    assert scalar_as(conn, client, "SELECT pgjobs.submit('kb_kind', 'user_table_rows', '3', "
                                   "'{\"small\": true}')")
    assert scalar_as(conn, client, "SELECT pgjobs.pause(%s)", (delete,))
    assert scalar_as(conn, client, "SELECT pgjobs.resume(%s)", (delete,))
    assert scalar_as(conn, client, "SELECT pgjobs.cancel(%s)", (items,))
    assert scalar_as(conn, client, "SELECT pgjobs.retry(%s)", (items,))
    run_job(conn, delete)
    assert scalar(conn, "SELECT status FROM pgjobs.jobs WHERE id = %s", (delete,)) == "succeeded"
    assert kept_total(conn, client) == kept
    # An addition is refused, saying no room is left.
    with pytest.raises(errors.ObjectInUse, match=f"it keeps {kept} bytes now, 0 left"):
        scalar_as(conn, client, "SELECT pgjobs.add_items(%s, '[1]')", (items,))
    # null goes back to the default: the same addition fits.
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": null}')")
    assert scalar_as(conn, client, "SELECT pgjobs.add_items(%s, '[1]')", (items,)) == 1
    assert kept_total(conn, client) == kept + 3


@pytest.mark.parametrize("command", ["backfill", "delete"])
def test_the_command_line_prints_the_refusal_on_one_line_with_its_hint(
        conn: Conn, dsn: str, client: str, command: str) -> None:
    conn.execute("SELECT pgjobs.set_defaults('{\"max_item_bytes_per_client\": 10}')")
    as_client = make_conninfo(dsn, options=f"-c role={client}")
    args = {"backfill": ["--filter", "{}", "--set", json.dumps({"label": "z" * 6000})],
            "delete": [*[a for k in _keys(conn, 1, 300) for a in ("--exclude", k)]]}[command]
    result = CliRunner().invoke(main, ["--dsn", as_client, command, "user_table_rows",
                                       "--scope", "1" if command == "delete" else "2",
                                       *args, "--yes"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: role "), lines[0]
    assert "0 bytes now, 10 left" in lines[0] and "[55006] (hint: " in lines[0], lines[0]
    assert SETTING in lines[0], lines[0]
    assert kept_total(conn, client) == 0


@pytest.mark.parametrize("setting", ["max_items_per_job", "max_item_bytes_per_job"])
def test_a_refused_submit_never_names_the_id_of_the_job_it_rolled_back(
        conn: Conn, client: str, setting: str) -> None:
    """submit_items refused by a per-job ceiling named "job J", a job rolled
    back with the refusal that no one can ever look up; add_items, which
    adds to a job kept already, names it (h146)."""
    parent = int(scalar_as(conn, client, "SELECT pgjobs.submit_items('resize', 'user_table_rows', "
                                         "'1', '[1, 2]')"))
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps({setting: 2}),))
    try:
        with pytest.raises(errors.ObjectInUse) as submit:
            scalar_as(conn, client, "SELECT pgjobs.submit_items('resize', 'user_table_rows', '2', "
                                    "'[1, 2, 3]')")
        message = submit.value.diag.message_primary or ""
        assert message.startswith("the job being submitted has 0 "), message
        assert not re.search(r"job \d+", message), message
        assert submit.value.diag.message_hint
        with pytest.raises(errors.ObjectInUse) as add:
            scalar_as(conn, client, "SELECT pgjobs.add_items(%s, '[3]')", (parent,))
        message = add.value.diag.message_primary or ""
        assert message.startswith(f"job {parent} has "), message
    finally:
        conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps({setting: None}),))
