"""Where an export reads its rows: the primary, or a streaming standby.

``pgjobs worker --read-dsn DSN`` (``PGJOBS_READ_DSN``) reads export data from
a standby while the job's state (claim, heartbeats, checkpoint, completion)
stays on the primary. :class:`Reads` is the data connection of one export
attempt, and keeps one promise whatever server it reads from: **each chunk's
snapshot is no older than the job's submit, nor than any chunk read before it
(in this attempt or in an earlier one).** That makes a standby read equal to
a primary read made a little earlier: a standby replays the WAL in order, so
its snapshot is a snapshot the primary had, rows and pending deletes (their
jobs rows, hence their masks) alike.

How: the job row carries the WAL insert position of its submit
(``jobs.submit_lsn``, taken in the submit's transaction after its cutoff
snapshot); each chunk, inside its transaction, records a position no earlier
than its snapshot (the ``lsn`` of ``EXPORT_CHUNK_SQL``, in the chunk's own
first statement), kept in memory and in the checkpoint
(``read_lsn``). Before a chunk's transaction the read server must have
replayed past the larger of the two and must show the job row (so the
submit's own commit is there too); a standby that is not there yet is waited
for, up to ``--read-max-wait`` seconds, then ``--read-fallback`` decides:
``primary`` reads from the primary (and tries the standby again every
``PROBE_EVERY`` seconds, switching back once it has caught up) or ``wait``
keeps waiting (a warning each period). The lease is renewed while waiting,
and a stop, cancel or pause ends the wait.

However far behind a standby stays once it has served a chunk (replay paused
after the export began), it never serves snapshots older than
``--read-max-lag``: the primary's position is sampled every half of it, and
each sample, once that old, is required too (:meth:`Reads._freshness`). So a
REVOKE, an RLS policy or a delete on the primary reaches a standby-read export
within about 1.5 x max_lag, as it reaches a primary-read one at its next chunk.

A read server of another cluster or database (its system identifier or
database name differs from the primary's) is never read from: it counts as
unavailable. A query canceled by a recovery conflict on the standby (40001,
40P01) reads the chunk again, like a lost connection.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from pgjobs import db, queries

log = logging.getLogger("pgjobs.export")

FALLBACKS = ("primary", "wait")
DEFAULT_MAX_WAIT = 60.0
"""Seconds a chunk waits for the standby to reach its position (``--read-max-wait``)."""
DEFAULT_FALLBACK = "primary"
DEFAULT_MAX_LAG = 60.0
"""How stale a standby snapshot may be (``--read-max-lag``): a chunk is read only
on a standby that has replayed what the primary had written this long ago."""
PROBE_EVERY = 10.0
"""Seconds between looks at a lagging standby while reading from the primary."""
_POLL = 0.2
CONNECT_TIMEOUT = 10  # seconds, unless the read DSN says otherwise
_WARN_AFTER = 5.0  # a wait this long is logged as a warning (a short one is normal)
# A standby cancels a query that holds back replay (max_standby_streaming_delay).
RECOVERY_CONFLICTS = ("40001", "40P01")


@dataclass(frozen=True)
class ReadConfig:
    """A worker's ``--read-dsn``, ``--read-max-wait`` and ``--read-fallback``."""

    dsn: str
    max_wait: float = DEFAULT_MAX_WAIT
    fallback: str = DEFAULT_FALLBACK
    max_lag: float = DEFAULT_MAX_LAG

    def __post_init__(self) -> None:
        if self.fallback not in FALLBACKS:
            raise ValueError(f"read fallback must be one of {', '.join(FALLBACKS)}, "
                             f"not {self.fallback!r}")
        if self.max_wait < 0:
            raise ValueError("read max wait must be at least 0 seconds")
        if self.max_lag < 1:
            raise ValueError("read max lag must be at least 1 second")


def lsn(text: str | None) -> int:
    """A pg_lsn's text (``16/B374D848``) as an integer; None as 0."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _one(conn: db.Connection, sql: str,
         params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One dict row, psycopg's errors untranslated (the exporter sorts them)."""
    row = conn.execute(sql, params or {}).fetchone()
    assert row is not None, sql
    return dict(row)


def same_server(primary: tuple[str | None, str], other: tuple[str | None, str]) -> str | None:
    """Why a read server is not a copy of the primary's database, or None."""
    if primary[0] and other[0] and primary[0] != other[0]:
        return (f"it is another cluster (system identifier {other[0]}, the primary's is "
                f"{primary[0]})")
    if primary[1] != other[1]:
        return f"it is database {other[1]!r}, the primary's is {primary[1]!r}"
    return None


def check_read_dsn(primary_dsn: str, config: ReadConfig) -> None:
    """At worker start: refuse (InvalidInput, exit 2) a read DSN that reaches
    another cluster or database, or one that does not parse (no retry can reach
    it: it was warned about as unreachable, and every export then waited
    --read-max-wait for it or read from the primary); warn when it cannot be
    reached now (each chunk tries again, and the fallback applies meanwhile)."""
    from pgjobs.errors import InvalidDsn, InvalidInput

    problem = db.dsn_problem(config.dsn)
    if problem is not None:
        raise InvalidDsn(f"--read-dsn: invalid DSN: {problem}",
                         hint="fix --read-dsn (PGJOBS_READ_DSN): a URL such as "
                              "postgresql://USER@STANDBY:5432/DBNAME, or key=value pairs such "
                              "as 'host=STANDBY port=5432 dbname=DBNAME'")

    try:
        with db.connect_reader(config.dsn, app="pgjobs worker (standby)",
                               connect_timeout=CONNECT_TIMEOUT) as conn:
            other = db.server_identity(conn)
            in_recovery = bool(_one(conn, "SELECT pg_catalog.pg_is_in_recovery() AS r")["r"])
    except db.Error as exc:
        log.warning("--read-dsn cannot be reached now (%s); exports read from the primary "
                    "or wait (--read-fallback %s) until it can",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                    config.fallback)
        return
    with db.connect_reader(primary_dsn, app="pgjobs worker") as conn:
        why = same_server(db.server_identity(conn), other)
    if why is not None:
        raise InvalidInput(f"--read-dsn is not a standby of this database: {why}",
                           hint="point --read-dsn (PGJOBS_READ_DSN) at a streaming standby "
                                "of the primary, with the same database name")
    if not in_recovery:
        log.warning("--read-dsn is not in recovery (a primary, or a promoted standby): "
                    "exports read from it")


class Reads:
    """The data connection of one export attempt (see the module's docstring).

    ``connection()`` before each chunk's transaction; ``note(conn, lsn)`` with the
    position its first statement returned; ``lost()`` after an error that loses
    the connection or the chunk; ``close()`` at the end. ``position`` is what
    the checkpoint records; ``counts`` how many chunks each server served."""

    def __init__(self, primary_dsn: str, config: ReadConfig | None, job_id: int, *,
                 position: str | None, control: Any, stop: threading.Event,
                 counts: dict[str, Any] | None = None):
        self.primary_dsn = primary_dsn
        self.config = config
        self.job_id = job_id
        self.control = control  # the exporter's _Control: call(), keepalive()
        self.stop = stop
        self.need = lsn(position)
        self.counts = {"standby": int((counts or {}).get("standby", 0)),
                       "primary": int((counts or {}).get("primary", 0))}
        self._primary: db.Connection | None = None
        self._standby: db.Connection | None = None
        self._standby_at = 0  # the standby's position last seen (this connection)
        self._using: db.Connection | None = None
        self._on_primary_since: float | None = None
        self._next_probe = 0.0
        self._primary_identity: tuple[str | None, str] | None = None
        self._refused: str | None = None
        self._past_the_claim = False  # behind_the_claim() asked for once
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        if config is not None:
            submitted = control.call(lambda c: db.scalar(c, queries.READ_SUBMIT_LSN,
                                                         {"id": job_id}))
            self.need = max(self.need, lsn(submitted))

    @property
    def position(self) -> str | None:
        return lsn_text(self.need) if self.need else None

    def connection(self) -> db.Connection:
        """The connection the next chunk reads from; its transaction, begun after
        this returns, sees at least ``self.need``."""
        if self.config is None:
            self._using = self._primary_connection()
            return self._using
        self._freshness()
        if self._on_primary_since is not None:
            # Fallen back: look at the standby now and then, without waiting.
            if time.monotonic() >= self._next_probe:
                self._next_probe = time.monotonic() + PROBE_EVERY
                if self._probe():
                    log.info("job %s: the standby has caught up: reading from it again",
                             self.job_id)
                    self._on_primary_since = None
        else:
            self._wait_for_standby()
        if self._on_primary_since is not None:
            self._using = self._primary_connection()
        else:
            self._using = self._standby
        assert self._using is not None
        return self._using

    def note(self, conn: db.Connection, position: str | None) -> None:
        """The chunk's position, taken inside its transaction after its snapshot (in
        the chunk's own first statement, ``EXPORT_CHUNK_SQL``: no round trip)."""
        at = lsn(position)
        self.need = max(self.need, at)
        if conn is self._standby:
            self._standby_at = max(self._standby_at, at)
            self.counts["standby"] += 1
        else:
            self.counts["primary"] += 1

    def recovery_conflict(self, exc: BaseException) -> bool:
        """A standby canceled the chunk's query to let replay go on: read it again."""
        state = getattr(exc, "sqlstate", None)
        return (self._using is not None and self._using is self._standby
                and str(state) in RECOVERY_CONFLICTS)

    def behind_the_claim(self, exc: BaseException) -> bool:
        """A standby's chunk refused to read (55000) while the job row it sees
        still has its typo guard pending (export_chunk_sql): the standby had
        replayed the submit and the scope's rows but not the claim that judged
        them on the primary. Once an attempt, the next read needs the
        primary's position now (waited for, or --read-fallback): True, read
        the chunk again. Otherwise (the primary's own refusal, a second one)
        False: the attempt fails and the next claim judges."""
        if (str(getattr(exc, "sqlstate", None)) != "55000" or self._using is None
                or self._using is not self._standby or self._past_the_claim):
            return False
        self._past_the_claim = True
        at = self.control.call(lambda c: db.scalar(c, queries.READ_PRIMARY_POSITION))
        self.need = max(self.need, lsn(at))
        return True

    def lost(self) -> None:
        """The chunk's connection failed: the next chunk connects (and checks) anew."""
        if self._using is self._standby:
            self._close_standby()
        elif self._using is self._primary and self._primary is not None:
            with contextlib.suppress(Exception):
                self._primary.close()
            self._primary = None
        self._using = None

    def close(self) -> None:
        self._close_standby()
        if self._primary is not None:
            with contextlib.suppress(Exception):
                self._primary.close()
            self._primary = None

    # --- internals -----------------------------------------------------------

    def _freshness(self) -> None:
        """Bound how stale a standby read may be, however far the standby stays
        behind (replay paused after the export began, a broken stream): the
        primary's WAL insert position is sampled every max_lag/2 seconds, and
        once a sample is max_lag old, every later chunk needs it. So a chunk's
        snapshot holds all the primary had written at most ~1.5 x max_lag
        before, and a REVOKE, RLS policy or delete on the primary reaches a
        standby-read export within that time (or the fallback applies)."""
        assert self.config is not None
        now = time.monotonic()
        if not self._samples or now - self._samples[-1][0] >= self.config.max_lag / 2:
            at = self.control.call(lambda c: db.scalar(c, queries.READ_PRIMARY_POSITION))
            self._samples.append((now, lsn(at)))
        while self._samples and now - self._samples[0][0] >= self.config.max_lag:
            self.need = max(self.need, self._samples.popleft()[1])

    def _primary_connection(self) -> db.Connection:
        if self._primary is None or self._primary.closed or self._primary.broken:
            self._primary = db.connect_reader(self.primary_dsn)
        return self._primary

    def _close_standby(self) -> None:
        if self._standby is not None:
            with contextlib.suppress(Exception):
                self._standby.close()
        self._standby = None
        self._standby_at = 0

    def _probe(self) -> bool:
        """Whether the standby can serve the next chunk now (no waiting)."""
        return self._state() is None

    def _state(self) -> str | None:
        """None when the standby is connected, is a copy of the primary's database,
        shows the job and has replayed past ``need``; else why not (for the log)."""
        assert self.config is not None
        if (self._standby is not None and not self._standby.closed
                and not self._standby.broken and self._standby_at >= self.need):
            return None
        try:
            if self._standby is None or self._standby.closed or self._standby.broken:
                self._close_standby()
                conn = db.connect_reader(self.config.dsn, app="pgjobs export (standby)",
                                         connect_timeout=CONNECT_TIMEOUT)
                why = same_server(self._primary_id(), db.server_identity(conn))
                if why is not None:
                    conn.close()
                    if why != self._refused:
                        log.error("job %s: not reading from --read-dsn: %s", self.job_id, why)
                    self._refused = why
                    return f"the read server is not a copy of this database: {why}"
                self._standby = conn
            row = _one(self._standby, queries.READ_READY, {"id": self.job_id})
        except db.Error as exc:
            self._close_standby()
            return f"cannot use it ({str(exc).strip().splitlines()[0] if str(exc) else exc})"
        replayed = lsn(row["replayed"])
        if replayed >= self.need and row["job_visible"]:
            self._standby_at = replayed
            return None
        behind = max(0, self.need - replayed)
        return (f"it has replayed to {row['replayed']}, {behind} bytes before "
                f"{lsn_text(self.need)}" + (" (replay is paused)" if row["paused"] else "")
                + ("" if row["job_visible"] else "; the job is not visible there yet"))

    def _primary_id(self) -> tuple[str | None, str]:
        if self._primary_identity is None:
            self._primary_identity = db.server_identity(self._primary_connection())
        return self._primary_identity

    def _wait_for_standby(self) -> None:
        """Until the standby is ready, or (fallback primary) --read-max-wait has
        passed: then self._on_primary_since is set."""
        assert self.config is not None
        started = time.monotonic()
        warned_at = started
        why = self._state()
        if why is None:
            return
        log.info("job %s: waiting for the standby (%s)", self.job_id, why)
        warned = False
        while True:
            if self.stop.is_set():
                from pgjobs.poller.export import Stopped

                raise Stopped()
            self.control.keepalive()
            waited = time.monotonic() - started
            if waited >= self.config.max_wait and self.config.fallback == "primary":
                log.warning("job %s: the standby is not ready after %.0fs (%s): reading "
                            "from the primary", self.job_id, waited, why)
                self._on_primary_since = time.monotonic()
                self._next_probe = time.monotonic() + PROBE_EVERY
                return
            if (not warned and waited >= _WARN_AFTER) or (
                    warned and time.monotonic() - warned_at >= max(self.config.max_wait, 60.0)):
                warned, warned_at = True, time.monotonic()
                log.warning("job %s: waiting for the standby for %.0fs (%s)", self.job_id,
                            waited, why)
            time.sleep(_POLL)
            why = self._state()
            if why is None:
                log.info("job %s: the standby is ready after %.1fs", self.job_id,
                         time.monotonic() - started)
                return
