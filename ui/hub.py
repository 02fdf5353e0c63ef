"""The dashboard's two database connections and its event fan-out.

One connection LISTENs on ``pgjobs`` for the whole server; each browser's
``/events`` stream is an in-memory queue fed from it, so a browser never adds
a database connection. The events of the shared channel carry no target or
scope, and every role may LISTEN, so each batch of events is checked against
``pgjobs.jobs`` as the DSN's role (:data:`queries.UI_EVENT_JOBS`): an event
reaches browsers only when that role may see its job, exactly as the job row.
Every role may NOTIFY too, so a payload is only a wake-up: the status, done
and total browsers get are the row's, read in that same query (as
``pgjobs watch`` reads them), never the payload's.
The other connection serves every query of the app, one at a time (a lock):
dashboards are few and the queries short.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from pgjobs import db, queries
from pgjobs.errors import ConnectionFailed

log = logging.getLogger("pgjobs.ui")

QUEUE_SIZE = 1000        # events buffered per browser; a slower one misses the oldest
BATCH_WINDOW = 0.05      # seconds a batch of NOTIFY events waits for more before the check
TIMELINE_JOBS = 2000     # jobs whose recent events the detail page shows
TIMELINE_EVENTS = 100    # events kept per job
WORD = re.compile(r"[a-z][a-z_]{0,31}")  # an event or status name as pgjobs sends them
# The status each event leaves its job in (docs/events.md). A payload's event
# name is shown only when the row's status is that one: a forged (or stale)
# `failed` for a running job reads `update`, with the row's status.
EVENT_STATUS = {"submitted": "queued", "started": "running", "progress": "running",
                "throttled": "running", "retrying": "queued", "paused": "paused",
                "resumed": "queued", "succeeded": "succeeded", "failed": "failed",
                "canceled": "canceled"}
UPDATE = "update"  # the event name when the payload's does not match the row
Wants = Callable[[dict[str, Any]], bool]


def clean_event(payload: str) -> dict[str, Any] | None:
    """The fields of a ``pgjobs`` NOTIFY payload the relay looks at, typed, or
    None when it is not one. Any role that can connect may NOTIFY the shared
    channel, so a payload is untrusted input: only the id, event, status, done
    and total of the contract pass (names as pgjobs writes them, counts as
    integers), and of those only the id and the event name reach a browser
    (:meth:`Hub._relay`): the status, done, total, kind, target and scope come
    from the job row itself."""
    try:
        raw = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    event: dict[str, Any] = {}
    job_id = raw.get("id")
    if type(job_id) is not int or not 0 < job_id < 2**63:
        return None
    event["id"] = job_id
    for name in ("event", "status"):
        value = raw.get(name)
        if not isinstance(value, str) or not WORD.fullmatch(value):
            return None
        event[name] = value
    for name in ("done", "total"):
        value = raw.get(name)
        if value is not None and (type(value) is not int or not 0 <= value < 2**63):
            return None
        event[name] = value
    return event


class Hub:
    """The LISTEN connection, the query connection and the browsers' queues."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._query: db.AsyncConn | None = None
        self._lock = asyncio.Lock()
        # Each browser's queue, and which job events it wants (None: every one).
        self._subscribers: dict[asyncio.Queue[dict[str, Any] | None], Wants | None] = {}
        self._incoming: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._timeline: OrderedDict[int, deque[dict[str, Any]]] = OrderedDict()
        self.events_forwarded = 0
        self.events_dropped = 0
        self.listen_reconnects = 0
        self._seq = 0
        self.listening = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------

    async def _connect(self) -> db.AsyncConn:
        """The query connection; its search_path holds only pg_catalog, so targets
        print schema-qualified (as in pgjobs.stats()) and nothing resolves elsewhere."""
        conn = await db.connect_async(self.dsn, app="pgjobs ui")
        await db.rows_async(conn, queries.UI_SEARCH_PATH)
        return conn

    async def start(self) -> None:
        self._query = await self._connect()
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._relay())]

    async def stop(self) -> None:
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._query is not None:
            await self._query.close()

    # --- queries -----------------------------------------------------------------

    async def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[db.Row]:
        """Run one statement on the query connection as the DSN's role; a broken
        connection is replaced once, then the error stands."""
        async with self._lock:
            for attempt in (1, 2):
                if self._query is None or self._query.closed:
                    self._query = await self._connect()
                try:
                    return await db.rows_async(self._query, sql, params)
                except ConnectionFailed:
                    if attempt == 2:
                        raise
                    with contextlib.suppress(Exception):
                        await self._query.close()
                    self._query = None
        raise AssertionError("unreachable")

    async def stats(self) -> dict[str, Any]:
        [row] = await self.rows(queries.STATS)
        value: dict[str, Any] = row["stats"]
        return value

    # --- events --------------------------------------------------------------------

    def subscribe(self, wants: Wants | None = None) -> asyncio.Queue[dict[str, Any] | None]:
        """A browser's queue of events: of every job the DSN's role may see, or
        only those ``wants`` takes (a filtered page's: :func:`pgjobs.ui.app.
        event_filter`); a resync always."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers[queue] = wants
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.pop(queue, None)

    @property
    def browsers(self) -> int:
        return len(self._subscribers)

    def timeline(self, job_id: int) -> list[dict[str, Any]]:
        return list(self._timeline.get(job_id, ()))

    async def _listen(self) -> None:
        """Keep one LISTEN connection; on failure reconnect (1 s apart) and tell
        browsers to resynchronise (events in the gap were lost)."""
        while True:
            conn: db.AsyncConn | None = None
            try:
                conn = await db.connect_async(self.dsn, app="pgjobs ui listen")
                await db.listen_async(conn)
                self.listening.set()
                async for payload in db.notifies_async(conn):
                    self._incoming.put_nowait(payload)
            except asyncio.CancelledError:
                if conn is not None:
                    await conn.close()
                raise
            except Exception as exc:  # the connection failed: keep serving, retry
                log.warning("pgjobs ui: LISTEN connection lost (%s); reconnecting", exc)
                self.listen_reconnects += 1
                self.listening.clear()
                self._broadcast({"event": "resync"})
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                await asyncio.sleep(1.0)

    async def _relay(self) -> None:
        """Batch the raw payloads, keep those of jobs the DSN's role may see, and
        hand browsers one event per job and batch, in the order its last payload
        arrived, carrying the job row's status, done and total (read in the same
        query that checks visibility): a payload only wakes the relay up, so a
        forged one cannot show false progress or state."""
        while True:
            batch = [await self._incoming.get()]
            await asyncio.sleep(BATCH_WINDOW)
            while not self._incoming.empty():
                batch.append(self._incoming.get_nowait())
            woken: dict[int, list[str]] = {}  # job id: its payloads' event names
            for payload in filter(None, map(clean_event, batch)):
                woken[payload["id"]] = woken.pop(payload["id"], []) + [payload["event"]]
            if not woken:
                continue
            try:
                seen = {r["id"]: r for r in await self.rows(
                    queries.UI_EVENT_JOBS, {"ids": sorted(woken)})}
            except Exception as exc:  # the query connection failed: browsers resync
                log.warning("pgjobs ui: cannot check events (%s)", exc)
                self._broadcast({"event": "resync"})
                continue
            for job_id, names in woken.items():
                job = seen.get(job_id)
                if job is None:  # not this role's to see (or pruned already): not counted
                    continue
                status = job["status"]
                name = next((n for n in reversed(names) if EVENT_STATUS.get(n) == status),
                            UPDATE)
                done, total = int(job["done"] or 0), job["total"]
                event: dict[str, Any] = {
                    "id": job_id, "event": name, "status": status, "done": done,
                    "total": None if total is None else int(total),
                    "kind": job["kind"], "target": job["target"], "scope": job["scope"]}
                ran = job["ran_seconds"]
                rate = done / ran if ran and ran > 0 else None
                event["rows_per_second"] = round(rate, 1) if rate else None
                event["eta_seconds"] = (round(max(event["total"] - done, 0) / rate, 1)
                                        if rate and event["total"] is not None else None)
                self._record(event)
                self._broadcast(event)

    def _record(self, event: dict[str, Any]) -> None:
        job_id = int(event["id"])
        events = self._timeline.pop(job_id, None) or deque(maxlen=TIMELINE_EVENTS)
        events.append({"event": event.get("event"), "status": event.get("status"),
                       "done": event.get("done"), "total": event.get("total"),
                       "seq": self._seq + 1})
        self._timeline[job_id] = events
        while len(self._timeline) > TIMELINE_JOBS:
            self._timeline.popitem(last=False)

    def _broadcast(self, event: dict[str, Any]) -> None:
        self._seq += 1
        event = {**event, "seq": self._seq}
        if event.get("event") != "resync":
            self.events_forwarded += 1
        for queue, wants in list(self._subscribers.items()):
            if wants is not None and event.get("event") != "resync" and not wants(event):
                continue  # not a job its page lists (filtered on the server)
            if queue.full():  # a stalled browser: drop its oldest event
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                self.events_dropped += 1
            queue.put_nowait(event)
