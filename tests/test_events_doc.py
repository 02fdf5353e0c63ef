"""docs/events.md lists every job status and every NOTIFY event, and only those.

Statuses come from the jobs table's CHECK constraint in a migrated database;
events from every call of pgjobs._notify / pgjobs._notify_many in
sql/functions (a literal event, or a job status passed on as the event,
which the routines do for paused / canceled / failed), and the 'event' of a
payload a routine sends with pg_notify itself (channel_rotated). A routine that starts
sending a new event, or a migration that allows a new status, fails this
until the page says what it means.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "events.md"


def table_names(section: str) -> set[str]:
    """The first-column names (`name`) of the table under the heading `section`."""
    text = PAGE.read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", body, re.M))


def events_in(text: str, name: str) -> tuple[set[str], bool]:
    """The literal events one routine's text sends, and whether it passes a job's
    status (or a computed v_event) on as the event."""
    events: set[str] = set()
    status_passed = False
    for call in re.finditer(r"pgjobs\._notify(?:_many)?\(\s*[\w.]+\s*,\s*([^)]*)\)", text):
        argument = call.group(1).strip()
        literal = re.fullmatch(r"'([a-z_]+)'", argument)
        if literal:
            events.add(literal.group(1))
        elif argument in ("v_event", "v_job.status", "p_event"):
            status_passed = True
        else:
            raise AssertionError(f"{name}: an event this test cannot read: {argument}")
    for assigned in re.finditer(r"v_event\s*:=\s*CASE(.*?)END", text, re.S):
        events.update(re.findall(r"(?:THEN|ELSE)\s+'([a-z_]+)'", assigned.group(1)))
    # A payload a routine sends itself with pg_notify, about no job (the
    # rotation's channel_rotated): its 'event' key, wherever it is built.
    if re.search(r"\bpg_notify\(", text) and not name.startswith("_notify"):
        events.update(re.findall(r"'event',\s*'([a-z_]+)'", text))
    return events, status_passed


def sent_events() -> set[str]:
    events: set[str] = set()
    status_passed = False
    for path in (ROOT / "sql" / "functions").glob("*.sql"):
        found, passed = events_in(path.read_text(), path.name)
        events |= found
        status_passed = status_passed or passed
    assert status_passed  # heartbeat/release/fail pass the job's status on
    # The statuses those calls pass on as events: only final or paused ones.
    return events | {"paused", "canceled", "failed"}


def test_every_sent_event_is_listed() -> None:
    listed = table_names("Events (NOTIFY)")
    sent = sent_events()
    assert sent - listed == set(), "events sent but not in docs/events.md"
    assert listed - sent == set(), "events in docs/events.md that nothing sends"
    assert {"submitted", "started", "progress", "succeeded"} <= sent


def test_every_status_is_listed(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'pgjobs.jobs'::regclass AND conname = 'jobs_status_check'").fetchone()
    assert row is not None
    allowed = set(re.findall(r"'([a-z_]+)'::text", row[0]))
    assert len(allowed) == 6
    assert table_names("Statuses (`pgjobs.jobs.status`)") == allowed


def test_the_reader_sees_a_new_event() -> None:
    """The extraction itself: each way a routine names an event is picked up."""
    assert events_in("PERFORM pgjobs._notify(v_job, 'exploded');", "t") == ({"exploded"}, False)
    assert events_in("PERFORM pgjobs._notify_many(v_jobs, 'fizzled');", "t") == (
        {"fizzled"}, False)
    assert events_in("v_event := CASE v_job.status WHEN 'queued' THEN 'again' ELSE "
                     "v_job.status END; PERFORM pgjobs._notify(v_job, v_event);", "t") == (
        {"again"}, True)
