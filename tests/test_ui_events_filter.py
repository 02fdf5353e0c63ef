"""A filtered job list's live stream, over HTTP: `/events` with the list's
filters sends only the events of jobs that list could hold, read as the list
reads them (a scope as each registered target stores it: `01`, ` 1`, `+1`
are integer scope 1), where it sent every job's events and the page's script
hid them. Not by status, which changes: a listed job's later events still
come. And an empty list names as unfit only the ?target= it was given."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest

from tests.support import make_rows_target, scalar, wait_for
from tests.support.ui import EventStream, request, serving

Conn = psycopg.Connection[Any]
A, B = "public.rows_a", "public.rows_b"


@pytest.fixture
def two_targets(conn: Conn) -> None:
    """Two registered targets of integer scope."""
    for name in ("rows_a", "rows_b"):
        make_rows_target(conn, name)


def submit(conn: Conn, kind: str, target: str, scope: str) -> int:
    return int(scalar(conn, "SELECT pgjobs.submit(%s, %s::regclass, %s)", (kind, target, scope)))


def listening(base: str) -> None:
    wait_for(lambda: request(base, "GET", "/healthz")[0] == 200, 15, "the LISTEN connection")


# (the list's filters, the job whose events the page wants, jobs it does not):
# each a (kind, target, scope) submitted as such.
CASES = [
    ({"scope": "01"}, ("custom", A, "1"), [("custom", A, "2"), ("custom", B, "2")]),
    ({"scope": " 1"}, ("custom", B, "1"), [("custom", A, "2")]),
    ({"scope": "+1"}, ("custom", A, "1"), [("custom", B, "2")]),
    ({"target": A}, ("custom", A, "2"), [("custom", B, "2"), ("custom", B, "1")]),
    ({"kind": "other"}, ("other", B, "2"), [("custom", B, "2")]),
    ({"target": A, "scope": "01"}, ("custom", A, "1"),
     [("custom", B, "1"), ("custom", A, "2")]),
    ({"kind": "other", "scope": "1", "target": B}, ("other", B, "1"),
     [("custom", B, "1"), ("other", A, "1"), ("other", B, "2")]),
]


@pytest.mark.parametrize("filters, wanted, others", CASES,
                         ids=[urlencode(c[0]) for c in CASES])
def test_a_filtered_pages_stream_carries_only_its_lists_jobs(
        conn: Conn, dsn: str, two_targets: None, filters: dict[str, str],
        wanted: tuple[str, str, str], others: list[tuple[str, str, str]]) -> None:
    with serving(dsn) as base:
        listening(base)
        every = EventStream(base)
        page = EventStream(base, path="/events?" + urlencode(filters))
        skipped = [submit(conn, *job) for job in others]
        job = submit(conn, *wanted)  # after the others: their events came first
        # An unfiltered stream had them all, in order ...
        assert [e["id"] for e in every.events_until(lambda e: e["id"] == job)] == [
            *skipped, job]
        # ... the page's, the one job its list holds.
        first = page.next_event()
        assert first["id"] == job, (first, skipped)
        # The page's own list holds it (the same reading of the filters).
        listed = request(base, "GET", "/api/jobs?" + urlencode(filters))[2].decode()
        assert f'"id": {job},' in listed and not any(
            f'"id": {other},' in listed for other in skipped), listed
        every.close()
        page.close()


def test_a_listed_jobs_later_events_reach_a_page_filtered_by_status(
        conn: Conn, dsn: str, two_targets: None) -> None:
    """Status changes: a ?status=queued page follows its jobs to their end."""
    job = submit(conn, "custom", A, "1")
    with serving(dsn) as base:
        listening(base)
        page = EventStream(base, path="/events?" + urlencode({"status": "queued",
                                                               "scope": "01"}))
        scalar(conn, "SELECT pgjobs.cancel(%s)", (job,))
        event = page.next_event()
        assert (event["id"], event["status"]) == (job, "canceled")
        page.close()


def test_an_empty_list_names_only_the_target_it_was_given_as_unfit(
        conn: Conn, dsn: str, two_targets: None) -> None:
    with serving(dsn) as base:
        for scope in ("abc", "１"):
            page = request(base, "GET", "/?" + urlencode({"target": A, "scope": scope}))[2]
            text = page.decode()
            assert f"{A} (integer)" in text and B not in text.split('id="empty"')[1], text
            every = request(base, "GET", "/?" + urlencode({"scope": scope}))[2].decode()
            assert f"{A} (integer), {B} (integer)" in every
