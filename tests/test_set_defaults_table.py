"""set_defaults checks every integer setting from one table (h44).

Each integer setting of pgjobs.set_defaults had its own copied block
(`IF v_opt.key = 'max_...' AND ... THEN PERFORM pgjobs._option_int(...)`),
its range written again in the hint: a new setting was one more copy, and a
copy that named the wrong setting or range went unseen. Now
pgjobs._integer_defaults lists them (name, lowest, highest, what it bounds);
set_defaults lists them in its hint and checks each from that table. These
tests hold every row of the table to its range, through set_defaults.
"""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]


def _rows(conn: Conn) -> list[tuple[str, int, int, str]]:
    return [tuple(r) for r in conn.execute(
        "SELECT name, low, high, description FROM pgjobs._integer_defaults()").fetchall()]


def _set(conn: Conn, name: str, value: Any) -> Any:
    with conn.transaction():
        return scalar(conn, "SELECT pgjobs.set_defaults(%s::jsonb)",
                      (json.dumps({name: value}),))


def test_every_integer_setting_is_held_to_its_range(conn: Conn) -> None:
    rows = _rows(conn)
    assert len(rows) >= 8
    for name, low, high, _description in rows:
        assert _set(conn, name, low)[name] == low
        assert _set(conn, name, high)[name] == high
        for bad in (low - 1, high + 1, float(low), str(low)):
            with pytest.raises(errors.InvalidParameterValue) as info:
                _set(conn, name, bad)
            assert (info.value.diag.message_primary
                    == f'option "{name}" must be an integer from {low} to {high}, not '
                    + json.dumps(bad)), (name, bad)
            assert f'"{name}"' in (info.value.diag.message_hint or "")
        assert name not in _set(conn, name, None) or name == "max_replica_lag_bytes"


def test_the_hint_lists_every_integer_setting_with_its_range(conn: Conn) -> None:
    with pytest.raises(errors.InvalidParameterValue) as info:
        _set(conn, "no_such_setting", 1)
    hint = info.value.diag.message_hint or ""
    for name, low, high, description in _rows(conn):
        assert f"{name} (integer {low} to {high}: {description})" in hint, (name, hint)


def test_set_defaults_checks_integers_in_one_place(conn: Conn) -> None:
    """No copied block per setting: one call of _option_int, fed by the table."""
    source = scalar(conn, "SELECT prosrc FROM pg_proc WHERE oid = "
                          "'pgjobs.set_defaults(jsonb)'::regprocedure")
    assert len(re.findall(r"_option_int\(", source)) == 1, source
    assert "_integer_defaults()" in source
