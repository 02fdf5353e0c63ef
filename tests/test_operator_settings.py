"""Every setting an operator installs or changes through the SQL surface and
the command line refuses values that would destroy data, hand-over files, or
stall or overload the system: with 22023, a message naming the setting and a
hint that says what to pass, before anything is stored or scheduled.

Found in the operator-safety pass: `pgjobs schedule --retention 0` (and
`pgjobs.schedule('{"retention": "0"}')`) was accepted, so pg_cron pruned every
finished job each minute, queueing the files of exports just handed to their
users for deletion; `pgjobs prune` asks on a terminal for a short retention,
the unattended schedule had no minimum. The floor lives in the function
(pgjobs._retention_floor, 1 hour), so every client gets it; pgjobs.doctor
warns of a schedule installed under it before it existed.

pgjobs.schedule checks its options before it looks for pg_cron, so these run
on any test database: a bad option is 22023; a good one reaches the pg_cron
check (55000 here, or a schedule where pg_cron serves the database).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from tests.support.cli import unset_ambient_settings

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_ambient_settings(monkeypatch)


# --- pgjobs.schedule ----------------------------------------------------------------

BAD_SCHEDULES: dict[str, Any] = {
    # retention: under the floor (pg_cron prunes each minute), negative, past 1000
    # years, not an interval, the wrong JSON type, JSON null
    "retention 0": {"retention": "0"},
    "retention 0 seconds": {"retention": "0 seconds"},
    "retention 1 second": {"retention": "1 second"},
    "retention 59 minutes": {"retention": "59 minutes"},
    "retention 00:59:59": {"retention": "00:59:59"},
    "retention 1 hour ago": {"retention": "1 hour ago"},
    "retention -1 hour": {"retention": "-1 hour"},
    "retention 1 day -23 hours 1 second": {"retention": "1 day -23 hours -1 second"},
    "retention 1001 years": {"retention": "1001 years"},
    "retention empty": {"retention": ""},
    "retention soon": {"retention": "soon"},
    "retention number": {"retention": 3600},
    "retention zero number": {"retention": 0},
    "retention null": {"retention": None},
    "retention object": {"retention": {}},
    "retention array": {"retention": ["24 hours"]},
    "retention bool": {"retention": True},
    # runners: zero, negative, too many, fractional, text, null
    "runners 0": {"runners": 0},
    "runners -1": {"runners": -1},
    "runners 17": {"runners": 17},
    "runners 1e9": {"runners": 1000000000},
    "runners 1.5": {"runners": 1.5},
    "runners text": {"runners": "2"},
    "runners null": {"runners": None},
    # run_every: zero, a minute or more, text, null
    "run_every 0": {"run_every": 0},
    "run_every 60": {"run_every": 60},
    "run_every -5": {"run_every": -5},
    "run_every text": {"run_every": "10"},
    "run_every null": {"run_every": None},
    # unknown keys, a misspelt one among good ones
    "unknown key": {"every": 5},
    "misspelt retention": {"retension": "24 hours"},
    "capitalised key": {"Retention": "24 hours"},
    "unknown beside good": {"runners": 2, "budget": "50 seconds"},
}


@pytest.mark.parametrize("options", list(BAD_SCHEDULES.values()), ids=list(BAD_SCHEDULES))
def test_schedule_refuses_a_harmful_option(conn: Conn, options: Any) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute("SELECT pgjobs.schedule(%s::jsonb)", (json.dumps(options),))
    diag = caught.value.diag
    assert diag.sqlstate == "22023"
    (key,) = [k for k in options if k not in ("runners",) or len(options) == 1][:1]
    assert key in (diag.message_primary or ""), diag.message_primary
    assert diag.message_hint, "no hint"


@pytest.mark.parametrize("options", ["null", "[]", '"24 hours"', "1", "true", "[{}]"])
def test_schedule_refuses_options_that_are_no_object(conn: Conn, options: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(f"SELECT pgjobs.schedule('{options}'::jsonb)")
    assert caught.value.diag.message_hint


def test_schedule_refuses_sql_null_options(conn: Conn) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute("SELECT pgjobs.schedule(NULL)")
    assert caught.value.diag.message_hint


def test_the_retention_hint_says_the_floor_and_how_to_prune_sooner(conn: Conn) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute("""SELECT pgjobs.schedule('{"retention": "0"}')""")
    diag = caught.value.diag
    assert "1 hour" in (diag.message_primary or "")
    assert '"24 hours"' in (diag.message_hint or "")
    assert "pgjobs prune --retention" in (diag.message_hint or "")


GOOD_SCHEDULES: dict[str, Any] = {
    "defaults": {},
    "retention at the floor": {"retention": "1 hour"},
    "retention 01:00:00": {"retention": "01:00:00"},
    "retention 24 hours": {"retention": "24 hours"},
    "retention 30 days": {"retention": "30 days"},
    "retention 1000 years": {"retention": "1000 years"},
    "runners 16": {"runners": 16},
    "run_every 59": {"run_every": 59},
}


@pytest.mark.parametrize("options", list(GOOD_SCHEDULES.values()), ids=list(GOOD_SCHEDULES))
def test_schedule_takes_a_sound_option_to_the_pg_cron_check(conn: Conn, options: Any) -> None:
    """Past the option checks: here, pg_cron's absence (55000), never 22023."""
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT pgjobs.schedule(%s::jsonb)", (json.dumps(options),))


# --- the rest of the operator's surface ----------------------------------------------

BAD_CALLS: dict[str, tuple[str, tuple[Any, ...]]] = {
    # prune: every value is a deliberate one-off (the CLI asks on a terminal under an
    # hour), but never NULL, negative or past the timestamp range
    "prune NULL": ("SELECT pgjobs.prune(NULL)", ()),
    "prune negative": ("SELECT pgjobs.prune('-1 hour')", ()),
    "prune 1001 years": ("SELECT pgjobs.prune('1001 years')", ()),
    # the engine's budget and leases
    "run budget 0": ("CALL pgjobs.run('0')", ()),
    "run budget negative": ("CALL pgjobs.run('-1 second')", ()),
    "run budget NULL": ("CALL pgjobs.run(NULL)", ()),
    "claim lease 0": ("SELECT * FROM pgjobs.claim('{export}', 'w', '0', 1)", ()),
    "claim lease NULL": ("SELECT * FROM pgjobs.claim('{export}', 'w', NULL, 1)", ()),
    "claim lease 2 days": ("SELECT * FROM pgjobs.claim('{export}', 'w', '2 days', 1)", ()),
    "claim limit 0": ("SELECT * FROM pgjobs.claim('{export}', 'w', '30 seconds', 0)", ()),
    "claim limit NULL": ("SELECT * FROM pgjobs.claim('{export}', 'w', '30 seconds', NULL)",
                         ()),
    "claim_items lease 0": ("SELECT * FROM pgjobs.claim_items('{x}', 'w', '0', 1)", ()),
    "claim_items limit 0": ("SELECT * FROM pgjobs.claim_items('{x}', 'w', '30 seconds', 0)",
                            ()),
    # defaults every later job takes
    "defaults NULL": ("SELECT pgjobs.set_defaults(NULL)", ()),
    "defaults array": ("SELECT pgjobs.set_defaults('[]')", ()),
    "defaults unknown key": ("SELECT pgjobs.set_defaults(%s)", ('{"page_dealy": "1s"}',)),
    "defaults page_delay negative": ("SELECT pgjobs.set_defaults(%s)",
                                     ('{"page_delay": "-1 second"}',)),
    "defaults page_delay 1 day": ("SELECT pgjobs.set_defaults(%s)", ('{"page_delay": "1 day"}',)),
    "defaults page_delay number": ("SELECT pgjobs.set_defaults(%s)", ('{"page_delay": 5}',)),
    "defaults max_rows_per_second negative": ("SELECT pgjobs.set_defaults(%s)",
                                              ('{"max_rows_per_second": -1}',)),
    "defaults max_rows_per_second text": ("SELECT pgjobs.set_defaults(%s)",
                                          ('{"max_rows_per_second": "5000"}',)),
    "defaults max_replica_lag_bytes negative": ("SELECT pgjobs.set_defaults(%s)",
                                                ('{"max_replica_lag_bytes": -1}',)),
    "defaults max_wal_rate fraction": ("SELECT pgjobs.set_defaults(%s)",
                                       ('{"max_wal_rate": 1.5}',)),
    "defaults max_xact_age 2 days": ("SELECT pgjobs.set_defaults(%s)",
                                     ('{"max_xact_age": "2 days"}',)),
    "defaults pause_on_autovacuum text": ("SELECT pgjobs.set_defaults(%s)",
                                          ('{"pause_on_autovacuum": "no"}',)),
    "defaults max_parallel 0": ("SELECT pgjobs.set_defaults(%s)", ('{"max_parallel": 0}',)),
    "defaults max_pending_writers 0": ("SELECT pgjobs.set_defaults(%s)",
                                       ('{"max_pending_writers": 0}',)),
    "defaults notify_target_scope text": ("SELECT pgjobs.set_defaults(%s)",
                                          ('{"notify_target_scope": "yes"}',)),
}


@pytest.mark.parametrize("call", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_an_operator_call_refuses_a_harmful_value(conn: Conn, call: tuple[str, tuple[Any, ...]]
                                                  ) -> None:
    sql, params = call
    stored = "SELECT value FROM pgjobs.settings WHERE key = 'defaults'"
    before = conn.execute(stored).fetchall()
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(sql, params)
    assert caught.value.diag.message_hint, caught.value.diag.message_primary
    # Nothing stored: the defaults are untouched.
    assert conn.execute(stored).fetchall() == before


# --- the command line ------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("schedule", "--retention", "0"),
    ("schedule", "--retention", "0s"),
    ("schedule", "--retention", "59m"),
    ("schedule", "--retention", "3599s"),
    ("schedule", "--retention", "-1h"),
    ("schedule", "--retention", "soon"),
    ("schedule", "--runners", "0"),
    ("schedule", "--runners", "17"),
    ("schedule", "--run-every", "0"),
    ("schedule", "--run-every", "60"),
], ids=" ".join)
def test_the_cli_refuses_a_harmful_schedule_as_a_usage_error(dsn: str, args: tuple[str, ...]
                                                             ) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args])
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "[22023]" in lines[0] and "(hint: " in lines[0], lines[0]
    assert args[1] in lines[0] or args[1].lstrip("-").replace("-", "_") in lines[0], lines[0]


def test_the_cli_schedule_retention_refusal_names_the_floor(dsn: str) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "schedule", "--retention", "0"])
    assert result.exit_code == 2
    assert "1 hour" in result.stderr and "pgjobs prune --retention" in result.stderr


@pytest.mark.parametrize("retention", ["1h", "24h", "7d"])
def test_the_cli_takes_a_sound_retention_to_the_pg_cron_check(dsn: str, retention: str) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "schedule", "--retention", retention])
    assert result.exit_code == 1, result.output  # 55000: no pg_cron for this database
    assert "[55000]" in result.stderr and "pgjobs run --loop" in result.stderr


# --- a schedule installed before the floor (an upgrade) ----------------------------------

def test_doctor_warns_of_a_scheduled_retention_under_the_floor(cron_dsn: str) -> None:
    """An upgrade leaves a schedule as installed (it keeps pruning); doctor says
    that it is under the floor and how to reinstall it. The old schedule is
    stood in for by rewriting the prune entry's command in pg_cron's catalog."""
    with psycopg.connect(cron_dsn, autocommit=True) as conn:
        conn.execute("SELECT pgjobs.schedule()")
        try:
            conn.execute("UPDATE cron.job SET command = 'SELECT pgjobs.prune(''00:00:00'')'"
                         " WHERE jobname = 'pgjobs.prune'")
            rows = conn.execute("SELECT check_name, status, detail, fix FROM pgjobs.doctor()"
                                " WHERE check_name = 'pg_cron.retention'").fetchall()
            assert len(rows) == 1, rows
            _, status, detail, fix = rows[0]
            assert status == "warn"
            assert "00:00:00" in detail
            assert fix.startswith("SELECT pgjobs.schedule(")
            # The fix, run, clears it.
            conn.execute(fix.split(";")[0])
            assert conn.execute("SELECT count(*) FROM pgjobs.doctor()"
                                " WHERE check_name = 'pg_cron.retention'").fetchone() == (0,)
        finally:
            conn.execute("SELECT pgjobs.unschedule()")
