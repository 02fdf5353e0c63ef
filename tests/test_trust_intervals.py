"""An interval a job or a claim gives is one length of time (h21).

The lease, page_delay and max_xact_age options (and a claim's lease) are
checked against their bounds by an interval comparison, which counts a month
as 30 days and a year as 360, then used as now() + the interval (calendar
months of 28 to 31 days) or as its epoch (a year of 365.25 days). A month part
offset by days made them disagree, so a client's job went past the limits
that protect every tenant:

- {"page_delay": "-100 years 36000 days 1 hour"} compared as 1 hour, at
  least an administrator's default page_delay, and ran with a negative delay:
  none;
- {"max_xact_age": "100 years -35999 days -23 hours -50 min"} compared as 10
  minutes, within the default, and waited for no transaction younger than 525
  days;
- {"lease": "1000 mon -29999 days"} compared as 1 day and held its job (and
  its scope's gate) 437 days after its worker died.

pgjobs._interval_fixed is now the one reading of these: a month or year part
is refused (22023, with a hint), days and time are kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import build_target, job, scalar
from tests.support.roles import acting_as, drop_role, make_role

Conn = psycopg.Connection[Any]

# Each compares as within the option's bounds, and reads as something else.
CALENDAR = [
    ("page_delay", "-100 years 36000 days 1 hour"),
    ("page_delay", "1 mon -29 days -23 hours"),
    ("page_delay", "1 year -360 days 2 seconds"),
    ("max_xact_age", "100 years -35999 days -23 hours -50 min"),
    ("max_xact_age", "1 mon -30 days 5 min"),
    ("max_xact_age", "P1M-30DT5M"),                # ISO 8601 spelling
    ("lease", "1000 mon -29999 days"),
    ("lease", "1 mon -29 days"),
    ("lease", "-1 mon 31 days"),
    ("lease", "@ 1 year -359 days"),               # the 'postgres_verbose' spelling
]
# Fixed lengths: accepted as before.
# (A client asks for a page_delay of at least the default's 1 second and a
# max_xact_age of at most its 10 minutes.)
FIXED = [("page_delay", "1500 ms"), ("page_delay", "01:00:00"), ("page_delay", "PT2S"),
         ("max_xact_age", "10 min"), ("max_xact_age", "00:00:30"),
         ("max_xact_age", "2 days -47 hours -55 min"), ("lease", "30 seconds"),
         ("lease", "1 day"), ("lease", "P0DT1H"), ("lease", "1 day -1 hour")]
DEFAULTS = {"page_delay": "1 second", "max_xact_age": "10 min"}


@pytest.fixture
def client(conn: Conn) -> Iterator[str]:
    build_target(conn, "t", """id bigint NOT NULL, scope int NOT NULL, n int,
                 created_at timestamptz NOT NULL DEFAULT now() - interval '1 hour'""")
    conn.execute("INSERT INTO t (id, scope) SELECT g, 1 FROM generate_series(1, 5) g")
    conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps(DEFAULTS),))
    role = make_role(conn, "interval", "GRANT pgjobs_client TO {role}",
                     "GRANT SELECT, UPDATE, DELETE ON t TO {role}")
    yield role
    drop_role(conn, role)


def _submit(conn: Conn, role: str, kind: str, options: dict[str, Any]) -> int:
    if kind == "delete":
        sql = "SELECT pgjobs.submit_delete('t', '1', '{}', '{}', %s::jsonb)"
    elif kind == "backfill":
        sql = "SELECT pgjobs.submit_backfill('t', '1', '{}', '{\"n\": 1}', %s::jsonb)"
    elif kind == "export":
        sql = "SELECT pgjobs.submit_export('t', '1', '{}', %s::jsonb)"
    else:
        sql = "SELECT pgjobs.submit('custom', 't', '1', '{}', %s::jsonb)"
    with acting_as(conn, role):
        return int(scalar(conn, sql, (json.dumps(options),)))


# Every kind takes a lease; the throttling options are a writing job's.
SUBMITS = [(kind, key, value) for kind in ("delete", "backfill", "export", "custom")
           for key, value in CALENDAR if key == "lease" or kind in ("delete", "backfill")]


@pytest.mark.parametrize(("kind", "key", "value"), SUBMITS)
def test_a_month_or_year_part_is_refused_at_submit(conn: Conn, client: str, kind: str,
                                                   key: str, value: str) -> None:
    with pytest.raises(errors.InvalidParameterValue) as err:
        _submit(conn, client, kind, {key: value})
    assert f'"{key}"' in str(err.value)
    assert "no months or years" in (err.value.diag.message_hint or "")
    assert scalar(conn, "SELECT count(*) FROM pgjobs.jobs") == 0


@pytest.mark.parametrize(("key", "value"), CALENDAR)
def test_an_administrator_is_held_to_it_too(conn: Conn, client: str, key: str,
                                            value: str) -> None:
    """The rule is of the value, not the caller: set_defaults and an
    administrator's own submit refuse it as well."""
    with pytest.raises(errors.InvalidParameterValue):
        conn.execute("SELECT pgjobs.submit_delete('t', '1', '{}', '{}', %s::jsonb)",
                     (json.dumps({key: value}),))
    if key != "lease":
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SELECT pgjobs.set_defaults(%s::jsonb)", (json.dumps({key: value}),))
    assert scalar(conn, "SELECT pgjobs._defaults() ->> 'page_delay'") == "1 second"


@pytest.mark.parametrize(("key", "value"), FIXED)
def test_a_fixed_length_is_taken_and_reads_the_same_every_way(conn: Conn, client: str,
                                                               key: str, value: str) -> None:
    job_id = _submit(conn, client, "delete", {key: value})
    assert job(conn, job_id)["options"][key] == value
    # Compared, as an epoch and added to a time: one length.
    assert scalar(conn, """SELECT i = make_interval(secs => extract(epoch FROM i))
                                  AND extract(epoch FROM (timestamptz '2030-01-31 00:00+00' + i)
                                              - timestamptz '2030-01-31 00:00+00')
                                      = extract(epoch FROM i)
                             FROM (SELECT %s::interval AS i) s""", (value,)) is True


@pytest.mark.parametrize("lease", ["1 mon -29 days", "-1 mon 31 days", "1 year -359 days"])
@pytest.mark.parametrize("claim", [
    "SELECT * FROM pgjobs.claim('{custom}', 'w', %s::interval)",
    "SELECT * FROM pgjobs.claim_items('{custom}', 'w', %s::interval)",
    "SELECT * FROM pgjobs.claim_export(1, 'w', %s::interval)",
    "SELECT * FROM pgjobs.claim_import(1, 'w', %s::interval)",
])
def test_a_claim_lease_with_a_month_part_is_refused(conn: Conn, claim: str, lease: str) -> None:
    with pytest.raises(errors.InvalidParameterValue) as err:
        conn.execute(claim, (lease,))
    assert "lease must be from 1 second to 1 day" in str(err.value)
    assert "No months or years" in (err.value.diag.message_hint or "")


@pytest.mark.parametrize(("key", "value"), [c for c in CALENDAR if c[0] != "lease"])
def test_a_stored_month_part_fails_the_job_at_its_page(conn: Conn, client: str, key: str,
                                                       value: str) -> None:
    """A job that holds such a limit already (submitted before this check)
    fails at its first page, naming the option, instead of running past the
    limit; the rows stay."""
    job_id = _submit(conn, client, "delete", {})
    conn.execute("UPDATE pgjobs.jobs SET options = options || jsonb_build_object(%s::text,"
                 " %s::text) WHERE id = %s", (key, value, job_id))
    conn.execute("CALL pgjobs.run('20 seconds')")
    failed = job(conn, job_id)
    assert failed["status"] == "failed" and key in failed["error"]
    assert scalar(conn, "SELECT count(*) FROM t") == 5
