"""Every interval a caller passes is bounded, with a hint (adversarial pass hT).

A careless operator's `SELECT pgjobs.prune('1000000 years')` (or
`pgjobs prune --retention 1000000y`) failed with 22008 "timestamp out of
range", no hint, nothing rescued or pruned: now() minus the retention left
the timestamp range (and `pgjobs.schedule('{"retention": ...}')` installed a
cron entry failing so at every run). prune and schedule now refuse a
retention over 1000 years (22023, with a hint), as run, the claims and the
interval options refuse theirs.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import scalar

Conn = psycopg.Connection[Any]

HUGE = ["1000000 years", "200000 years", "1001 years"]


@pytest.mark.parametrize("retention", HUGE)
def test_prune_refuses_a_retention_past_1000_years_with_a_hint(conn: Conn,
                                                               retention: str) -> None:
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("SELECT pgjobs.prune(%s::interval)", (retention,))
    assert "retention" in str(exc.value)
    assert exc.value.diag.message_hint


@pytest.mark.parametrize("retention", HUGE)
def test_schedule_refuses_the_retention_prune_would_refuse(conn: Conn, retention: str) -> None:
    """Checked before pg_cron is looked for: a cron entry that fails at every run
    is never installed."""
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("SELECT pgjobs.schedule(%s::jsonb)", (f'{{"retention": "{retention}"}}',))
    assert "retention" in str(exc.value)
    assert exc.value.diag.message_hint


def test_prune_takes_1000_years_and_prunes_nothing_younger(conn: Conn) -> None:
    conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, scope int NOT NULL)")
    job_id = scalar(conn, "SELECT pgjobs.submit('custom', 'items', '1')")
    conn.execute("SELECT pgjobs.cancel(%s)", (job_id,))
    result = scalar(conn, "SELECT pgjobs.prune('1000 years')")
    assert result["deleted"] == 0
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 1


@pytest.mark.parametrize(("sql", "params"), [
    ("CALL pgjobs.run(%s::interval)", ()),
    ("SELECT * FROM pgjobs.claim(ARRAY['custom'], 'w', %s::interval)", ()),
    ("SELECT * FROM pgjobs.claim_items(ARRAY['custom'], 'w', %s::interval)", ()),
])
@pytest.mark.parametrize("value", HUGE)
def test_the_other_intervals_are_bounded_too(conn: Conn, sql: str, params: tuple[Any, ...],
                                             value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute(sql, (value, *params))
    assert exc.value.diag.message_hint


@pytest.mark.parametrize("option", ["page_delay", "lease"])
@pytest.mark.parametrize("value", HUGE)
def test_interval_options_are_bounded(conn: Conn, option: str, value: str) -> None:
    conn.execute("""CREATE TABLE t (id bigint NOT NULL, s text NOT NULL,
                                    created_at timestamptz NOT NULL);
                    CREATE INDEX ON t (s, id);
                    SELECT pgjobs.register_target('t', 'id', 's', 'created_at')""")
    with pytest.raises(errors.InvalidParameterValue) as exc:
        conn.execute("SELECT pgjobs.submit_delete('t', 'a', '{}', '{}', %s::jsonb)",
                     (f'{{"{option}": "{value}"}}',))
    assert exc.value.diag.message_hint
