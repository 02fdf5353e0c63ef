"""The connector: the one module that owns psycopg.

Everything the Python side asks of the database goes through the helpers
here, with statements from :mod:`pgjobs.queries`; database errors leave as
:class:`pgjobs.errors.PgjobsError`.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import os
import select
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pgjobs import queries
from pgjobs.errors import (
    ConnectionFailed,
    from_connect,
    from_psycopg,
    privilege_hint,
    refused_name,
)
from pgjobs.lazy import lazy_module

if TYPE_CHECKING:
    import psycopg
    import psycopg.conninfo
    import psycopg.rows
    import psycopg.types.json
    from psycopg import pq
    from psycopg.types.json import Jsonb
else:
    # Imported when first used, not with this module: the CLI imports the
    # connector, and `pgjobs --help` must not pay for psycopg (pgjobs/lazy.py).
    psycopg = lazy_module("psycopg")
    pq = lazy_module("psycopg.pq")

Row = dict[str, Any]
if TYPE_CHECKING:
    # A connection as the connector opens it (dict rows): the poller's annotations.
    Connection = psycopg.Connection[Row]
    # What psycopg raises, untranslated: PEP 249's Error, the base of every class it
    # raises. The poller catches it where it sorts errors itself (connection_lost,
    # recovery conflicts, the record a COPY refused) rather than as one line.
    Error = psycopg.Error
    AsyncConn = psycopg.AsyncConnection[Row]
else:
    def __getattr__(name: str) -> Any:
        """``Connection``, ``Error`` and ``AsyncConn``, psycopg's, read when first
        used (``except db.Error`` reads it only when something was raised)."""
        if name == "Connection":
            return psycopg.Connection[Row]
        if name == "Error":
            return psycopg.Error
        if name == "AsyncConn":
            return psycopg.AsyncConnection[Row]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextmanager
def translated(conn: psycopg.Connection[Any] | None = None) -> Iterator[None]:
    """Re-raise psycopg errors as PgjobsError (one line, SQLSTATE and hint). Given
    the session that was refused, a privilege PostgreSQL refused without a hint
    gets the one that fits what this role lacks (:func:`_refusal_hint`)."""
    try:
        yield
    except psycopg.Error as exc:
        error = from_psycopg(exc)
        if conn is not None and error.guessed_hint:
            error.hint = _refusal_hint(conn, error.message, error.hint)
        raise error from exc


def _refusal_hint(conn: psycopg.Connection[Any], message: str, guess: str | None
                  ) -> str | None:
    """The hint of a 42501 PostgreSQL raised without one, by what the role lacks
    (queries.REFUSED): the object its message names is pgjobs' schema only when
    the role may not use that schema, one of pgjobs' routines only when it may
    not execute it; else the object is the user's (a table named ``pgjobs`` or
    ``stats``). ``guess`` when the session cannot ask (a transaction the error
    aborted, a session gone)."""
    name = refused_name(message)
    if name is None or conn.closed or (
            conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE):
        return guess
    try:
        row = conn.execute(queries.REFUSED, {"name": name}).fetchone()
    except psycopg.Error:
        return guess
    if row is None:
        return guess
    outside, admin_only = (row["outside"], row["admin_only"]) if isinstance(row, dict) else row
    return privilege_hint("42501", message, outside=bool(outside), admin_only=bool(admin_only))


def other_database(conn: psycopg.Connection[Row], name: str) -> str | None:
    """The database this connection is to when the table name ``name``
    (database.schema.table) names another, as PostgreSQL decides it (its
    0A000, the comparison it makes: the name folded or quoted, truncated to 63
    bytes, compared exactly); None when PostgreSQL reads it in this database."""
    try:
        conn.execute(queries.READ_TARGET_NAME, {"name": name})
    except psycopg.Error as exc:
        if exc.sqlstate != "0A000":
            return None  # any other answer is the command's to give
        with translated(conn):
            row = conn.execute(queries.READ_CURRENT_DATABASE).fetchone()
        return str(row["database"]) if row is not None else ""
    return None


# Every pgjobs session talks UTF-8, whatever the database's encoding or the
# PGCLIENTENCODING of the shell: in a SQL_ASCII database a session in the
# database's own encoding reads text as bytes, and a name read back and sent
# again (yoyo's migration log) went as bytea (42883 `sql_identifier = bytea`).
CLIENT_ENCODING = "utf8"


def connect(dsn: str, *, autocommit: bool = True, app: str = "pgjobs") -> psycopg.Connection[Row]:
    """A dict-row connection, autocommit by default (every pgjobs function is its
    own transaction), in UTF-8 (CLIENT_ENCODING)."""
    try:
        return psycopg.connect(
            dsn, autocommit=autocommit, row_factory=psycopg.rows.dict_row, application_name=app,
            client_encoding=CLIENT_ENCODING)
    except psycopg.Error as exc:
        raise from_connect(exc) from exc


# How long a worker's statements wait for a lock: its control statements
# (heartbeat, complete, fail, release) for the job's row, which a client that
# pauses or cancels its own running job in a transaction it leaves open holds,
# and its data statements (an export's chunk, an import's batch) for the job's
# table, which an ALTER TABLE, LOCK TABLE or CREATE INDEX not yet committed
# holds. A worker waiting on either for good was a worker lost to every other
# tenant (`--concurrency 1`), and its job neither moved nor said why.
JOB_ROW_LOCK_TIMEOUT = "5s"


def wait_for_job_rows_at_most(conn: Connection) -> None:
    """Bound the lock waits of a worker's connection (JOB_ROW_LOCK_TIMEOUT)."""
    conn.execute(queries.SET_LOCK_TIMEOUT, {"timeout": JOB_ROW_LOCK_TIMEOUT})


def lock_wait_timed_out(exc: BaseException) -> bool:
    """A statement gave up waiting for a lock (55P03, lock_timeout): psycopg's
    error, or the PgjobsError translated from it."""
    return getattr(exc, "sqlstate", None) == "55P03"


def dsn_problem(dsn: str) -> str | None:
    """Why libpq cannot parse ``dsn`` (the first line of its complaint), else None:
    a DSN that never connects, whatever the network does."""
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "unparsable"
    return None


def _data_session(conn: Connection) -> None:
    """A data connection's settings (EXPORT_SESSION_SETTINGS) and its lock
    timeout (JOB_ROW_LOCK_TIMEOUT) in one statement: one round trip before its
    first chunk or batch, on every connect and reconnect, instead of two."""
    conn.execute(queries.DATA_SESSION_SETTINGS, {"timeout": JOB_ROW_LOCK_TIMEOUT})


def connect_reader(dsn: str, app: str = "pgjobs export",
                   connect_timeout: int | None = None) -> psycopg.Connection[Row]:
    """An export's data connection (to the primary or, with ``--read-dsn``, a
    standby): read-only REPEATABLE READ transactions (one per chunk) in the
    settings every export is printed in, waiting at most JOB_ROW_LOCK_TIMEOUT
    for a lock (the exporter reads the chunk again, saying who held it).
    psycopg errors are not translated: the exporter tells a lost connection
    (read the chunk again) from others."""
    extra: dict[str, Any] = {}
    if (connect_timeout is not None
            and "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(dsn)):
        extra["connect_timeout"] = connect_timeout
    conn = psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row,
                           application_name=app, client_encoding=CLIENT_ENCODING, **extra)
    try:
        _data_session(conn)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
    except BaseException:
        conn.close()
        raise
    return conn


def connect_writer(dsn: str, app: str = "pgjobs import") -> Connection:
    """An import's data connection: autocommit (each batch opens its own
    transaction) in the settings every export is printed in, so that values read
    back as an export wrote them, waiting at most JOB_ROW_LOCK_TIMEOUT for a lock
    (the importer resumes from the checkpoint, saying who held it). psycopg
    errors are not translated: the importer tells a lost connection (read on
    from the checkpoint) from others."""
    conn = psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row,
                           application_name=app, client_encoding=CLIENT_ENCODING)
    try:
        _data_session(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def server_identity(conn: Connection) -> tuple[str | None, str]:
    """(system identifier, database) of the server conn reached; the identifier is
    None where pg_control_system() is not granted (then only the database counts).
    Other psycopg errors are not translated: the exporter sorts them."""
    try:
        row = conn.execute(queries.READ_SERVER_IDENTITY).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        row = conn.execute(queries.READ_CURRENT_DATABASE).fetchone()
        assert row is not None
        return (None, str(row["database"]))
    assert row is not None
    return (row["system"], str(row["database"]))


def worker_name(role: str = "worker") -> str:
    """A name for this process and call. Each claim appends its own token to it
    (the job row's ``worker``), and that identity, not this name, owns the lease."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


NUMERIC_DIGITS = 131072
"""Digits before the decimal point that PostgreSQL's numeric (a jsonb number) holds."""
NUMERIC_SCALE = 16383
"""Digits after the decimal point that it holds."""
NUMERIC_EXPONENT = 1073741823
"""The bound (INT_MAX / 2) of the exponent numeric reads, whatever the digits: a
zero's exponent is refused at it too (``0e1073741823``), which Python reads as 0.0."""


def jsonb_number(text: str) -> decimal.Decimal:
    """A JSON number's text as PostgreSQL's jsonb reads it (numeric, exact), or
    ValueError when out of numeric's range, where Python reads it as a float
    (inf, 0.0) or refuses an integer of more than 4300 digits that jsonb takes.
    The one rule of the importer's JSONL records and the command line's JSON
    arguments."""
    _, e, exponent = text.lower().partition("e")
    if e:
        digits = exponent.lstrip("+-").lstrip("0")
        # Read as numeric reads it (strtol): the written exponent, not the value's.
        if len(digits) > 10 or int(digits or "0") >= NUMERIC_EXPONENT:
            raise ValueError(f"the exponent of {text[:40]}{'...' if len(text) > 40 else ''} "
                             "is out of the range of PostgreSQL's numeric (jsonb refuses it)")
    number = decimal.Decimal(text)
    scale = -int(number.as_tuple().exponent)
    if scale > NUMERIC_SCALE or (not number.is_zero()
                                 and number.adjusted() + 1 > NUMERIC_DIGITS):
        raise ValueError(f"the number {text[:40]}{'...' if len(text) > 40 else ''} is out "
                         "of the range of PostgreSQL's numeric (jsonb refuses it)")
    return number


def jsonb(value: Any) -> Jsonb:
    """``value`` as a jsonb parameter, its numbers exact (:func:`json_text`)."""
    return psycopg.types.json.Jsonb(value, dumps=json_text)


def json_text(value: Any) -> str:
    """``value`` as JSON text. A ``decimal.Decimal`` (a JSON argument's
    non-integer number, parsed exactly: cli.common.parse_json) is written as
    its own digits, never through a float: ``0.30000000000000001`` sent as
    ``0.3`` moved a filter's bound and a backfill's value. Anything else is
    ``json.dumps``'s."""
    try:
        return json.dumps(value)
    except TypeError:  # a Decimal inside: the exact form below
        return _exact_json(value)


def _exact_json(value: Any) -> str:
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        return str(value)  # "1.0", "1E+400", "-0.5": JSON number text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_exact_json(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_exact_json(v) for v in value) + "]"
    return json.dumps(value)


def one(conn: psycopg.Connection[Row], sql: str, params: dict[str, Any] | None = None) -> Row:
    with translated(conn):
        row = conn.execute(sql, params or {}).fetchone()
    assert row is not None, sql
    return row


def scalar(conn: psycopg.Connection[Row], sql: str, params: dict[str, Any] | None = None) -> Any:
    return next(iter(one(conn, sql, params).values()))


def rows(
    conn: psycopg.Connection[Row], sql: str, params: dict[str, Any] | None = None
) -> list[Row]:
    with translated(conn):
        return conn.execute(sql, params or {}).fetchall()


def execute(conn: psycopg.Connection[Row], sql: str, params: dict[str, Any] | None = None) -> None:
    with translated(conn):
        conn.execute(sql, params or {})


def listen_job_channel(conn: psycopg.Connection[Row], target: str, scope: str) -> str | None:
    """LISTEN on the channel that carries the full events of (target, scope)'s
    jobs, when this role may obtain it (pgjobs.channel: SELECT on the target,
    its scope allowed); returns its name, or None when it may not (the shared
    channel `pgjobs` still carries every job's id, status and progress)."""
    from psycopg import sql

    try:
        row = conn.execute(queries.CHANNEL, {"target": target, "scope": scope}).fetchone()
    except psycopg.Error:
        return None
    if row is None:
        return None
    name = str(next(iter(row.values())))
    with translated():
        conn.execute(sql.SQL(queries.LISTEN_CHANNEL).format(channel=sql.Identifier(name)))
    return name


def listener(dsn: str, app: str = "pgjobs worker") -> psycopg.Connection[Row]:
    """A connection LISTENing on the shared channel ``pgjobs`` (a worker's wake-up:
    a submit, a resume, a released lease)."""
    conn = connect(dsn, app=app)
    try:
        execute(conn, queries.LISTEN)
    except BaseException:
        conn.close()
        raise
    return conn


def notified(conn: psycopg.Connection[Row], timeout: float) -> bool:
    """Whether a notification arrived on ``conn`` within ``timeout`` seconds. The
    ones already queued behind it are dropped (:func:`drain`): a burst is one
    wake-up."""
    if not notifications(conn, timeout, stop_after=1):
        return False
    drain(conn)
    return True


def drain(conn: psycopg.Connection[Row], limit: float = 0.1) -> int:
    """Drop the notifications queued on ``conn``; how many. A wake-up reads one
    notification and then drains: every role that can connect may NOTIFY on
    ``pgjobs`` (``SELECT pg_notify('pgjobs', ...) FROM generate_series(1,
    100000)``: one statement), and each notification read one by one was one
    claim (a worker) or one ``CALL pgjobs.run`` (a runner), a hundred thousand
    engine calls for one statement of a role with no grants.

    Drops what came before the reply to a statement that does nothing
    (:data:`~pgjobs.queries.ROUND_TRIP`), again until one brings nothing new,
    for at most ``limit`` seconds: a steady flood still lets the caller go on
    (one wake-up per ``limit`` at most). The server sends every notification
    committed before a statement ahead of its reply, so a burst is read whole
    however many pieces it reaches the socket in and however late each comes.
    Reading only what had arrived, or waiting 20 ms for more, made the count
    of wake-ups a matter of scheduling: the server sends a burst in pieces of
    its 8 kB send buffer, each as soon as it is given the CPU (a loaded CI
    machine: six wake-ups for one statement).
    ``conn`` must be an autocommit connection (a listener is), idle."""
    dropped = 0
    deadline = time.monotonic() + limit
    while True:
        with translated():
            conn.execute(queries.ROUND_TRIP)
        got = len(notifications(conn, 0))
        dropped += got
        if not got or time.monotonic() >= deadline:
            return dropped


def notifications(conn: psycopg.Connection[Row], timeout: float,
                  stop_after: int | None = None) -> list[str]:
    """The payloads of the notifications that arrive on ``conn`` within ``timeout``
    seconds (at most ``stop_after`` of them). The one way the CLI waits on LISTEN:
    a session lost while waiting (server restart, pg_terminate_backend) raises
    :class:`~pgjobs.errors.ConnectionLost`, one line with a hint, never psycopg's
    error (tests/test_cli_connection_lost.py)."""
    with translated():
        return [note.payload for note in conn.notifies(timeout=timeout, stop_after=stop_after)]


# --- the export's data connection: COPY out, and what a lost session looks like ---


def copy_out(conn: psycopg.Connection[Row], sql: str,
             sink: Callable[[memoryview], Any]) -> int:
    """Run ``COPY ... TO STDOUT`` and pass each row's bytes to ``sink``; return the
    row count. Drives libpq directly: psycopg's per-row generator costs about as
    much as the server's work, this loop a tenth of it. The connection must be
    idle or inside a transaction; it is left in the same state."""
    encoding = conn.info.encoding
    with conn.lock:
        count, after = _copy(conn.pgconn, sql.encode(encoding), sink, encoding)
    # Statements sent after the COPY in the same query (the chunk's COMMIT,
    # queries.COPY_THEN_COMMIT): each must succeed too.
    for result in after:
        if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            raise _error(result, conn.pgconn, encoding)
    return count


def copy_then_begin(conn: psycopg.Connection[Row], copy_sql: str,
                    sink: Callable[[memoryview], Any], sql: str,
                    params: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """A chunk's COPY and COMMIT (as :func:`copy_out` runs
    queries.COPY_THEN_COMMIT), followed in the same query by the next chunk's
    BEGIN and first statement ``sql`` (as :func:`begin_chunk` sends them): the
    server runs the next chunk's statement as soon as this chunk's COPY ends,
    and its row is read with the COPY's end, no round trip of its own. Returns
    (rows copied, the statement's first row as begin_chunk returns it, or None
    when the BEGIN or the statement failed: the connection is then in a failed
    transaction, which the caller rolls back with :func:`end_chunk` before the
    next chunk begins with its own statement, which raises what there is to
    raise). A COPY or COMMIT that fails raises, as copy_out does."""
    encoding = conn.info.encoding
    text = (f"{queries.COPY_THEN_COMMIT.format(copy=copy_sql)}; "
            f"{queries.CHUNK_BEGIN}; {psycopg.ClientCursor(conn).mogrify(sql, params)}")
    with conn.lock:
        count, after = _copy(conn.pgconn, text.encode(encoding), sink, encoding)
    if not after or after[0].status != pq.ExecStatus.COMMAND_OK:
        raise _error(after[0] if after else None, conn.pgconn, encoding)
    begun = after[1:]
    if (len(begun) != 2 or begun[0].status != pq.ExecStatus.COMMAND_OK
            or begun[1].status != pq.ExecStatus.TUPLES_OK or begun[1].ntuples < 1):
        return count, None
    return count, _first_row(begun[1], encoding)


def _copy(pg: Any, text: bytes, sink: Callable[[memoryview], Any],
          encoding: str) -> tuple[int, list[Any]]:
    """Send ``text`` (a COPY TO STDOUT, then any statements), pass each row to
    ``sink``; (the COPY's row count, the results of the statements after it, an
    error's included: the server skips the rest of the query after one). The
    caller holds the connection's lock."""
    pg.send_query(text)  # psycopg's pq raises on failure
    result = _next_result(pg)
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        _drain(pg)
        raise _error(result, pg, encoding)
    get = pg.get_copy_data
    while True:
        nbytes, data = get(1)
        if nbytes > 0:
            try:
                sink(data)
            except BaseException:
                _abandon(pg)
                raise
        elif nbytes == 0:
            _wait_readable(pg)
        elif nbytes == -1:
            break
        else:
            raise psycopg.OperationalError(pg.get_error_message(encoding))
    result = _next_result(pg)
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        _drain(pg)
        raise _error(result, pg, encoding)
    status = (result.command_status or b"").split()
    after = []
    while (more := _next_result(pg)) is not None:
        after.append(more)
    return int(status[-1]) if status and status[-1].isdigit() else 0, after


def begin_chunk(conn: psycopg.Connection[Row], sql: str,
                params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Open an export chunk's REPEATABLE READ, read-only transaction and run its
    first statement ``sql`` (which takes the snapshot), in one round trip: the
    BEGIN and the statement travel as one query, the parameters bound as
    literals (``ClientCursor.mogrify``, under the data connection's
    standard_conforming_strings). Returns the statement's first row (text
    values, None for NULL). The transaction ends with the chunk's COPY, which
    commits in the same round trip (queries.COPY_THEN_COMMIT, or
    :func:`copy_then_begin`, which begins the next chunk there too), or, on any
    error, with :func:`end_chunk`. psycopg errors are not translated."""
    text = f"{queries.CHUNK_BEGIN}; {psycopg.ClientCursor(conn).mogrify(sql, params)}"
    pg = conn.pgconn
    encoding = conn.info.encoding
    with conn.lock:
        pg.send_query(text.encode(encoding))
        begun = _next_result(pg)
        if begun is None or begun.status != pq.ExecStatus.COMMAND_OK:
            _drain(pg)
            raise _error(begun, pg, encoding)
        result = _next_result(pg)
        _drain(pg)
    if result is None or result.status != pq.ExecStatus.TUPLES_OK:
        raise _error(result, pg, encoding)
    if result.ntuples < 1:
        raise psycopg.ProgrammingError(f"the chunk's statement returned no row: {sql.strip()}")
    return _first_row(result, encoding)


def _first_row(result: Any, encoding: str) -> dict[str, Any]:
    """A result's first row by column name (text values, None for NULL)."""
    return {result.fname(i).decode(encoding): (None if (value := result.get_value(0, i)) is None
                                                else value.decode(encoding))
            for i in range(result.nfields)}


def end_chunk(conn: psycopg.Connection[Row]) -> None:
    """Roll back a chunk's transaction that did not commit (its COPY failed, was
    abandoned, or never ran), so that the connection is idle again; nothing when
    it is idle or broken already (the caller sorts the error it is handling)."""
    if conn.closed or conn.info.transaction_status == pq.TransactionStatus.IDLE:
        return
    with contextlib.suppress(psycopg.Error):
        conn.rollback()


def copy_in(conn: Connection, sql: str, data: bytes) -> None:
    """Run ``COPY ... FROM STDIN`` with ``data`` (whole records) in a transaction
    block of its own (a savepoint inside the caller's): every record is staged, or
    none and the caller's transaction goes on. psycopg errors are not translated:
    the importer reads the SQLSTATE and the line COPY refused from them."""
    with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as cp:
        cp.write(data)


def _abandon(pg: Any) -> None:
    """The sink refused a row: cancel the COPY and read to its end, so that the
    session is usable again (its transaction failed, and rolls back)."""
    with contextlib.suppress(Exception):
        pg.get_cancel().cancel()
    with contextlib.suppress(psycopg.Error):
        while True:
            nbytes, _ = pg.get_copy_data(1)
            if nbytes == 0:
                _wait_readable(pg)
            elif nbytes < 0:
                break
        _drain(pg)


def _wait_readable(pg: Any) -> None:
    ready, _, _ = select.select([pg.socket], [], [], 60.0)
    if not ready:
        raise psycopg.OperationalError("no data from the server for 60 seconds")
    pg.consume_input()


def _next_result(pg: Any) -> Any:
    while True:
        pg.consume_input()
        if not pg.is_busy():
            return pg.get_result()
        _wait_readable(pg)


def _drain(pg: Any) -> None:
    while True:
        try:
            pg.consume_input()
        except psycopg.Error:
            return
        if pg.is_busy():
            _wait_readable(pg)
            continue
        if pg.get_result() is None:
            return


def _error(result: Any, pg: Any, encoding: str) -> psycopg.Error:
    if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
        return psycopg.errors.error_from_result(result, encoding=encoding)
    return psycopg.OperationalError(pg.get_error_message(encoding) or "COPY failed")


def cancel_statement(conn: psycopg.Connection[Row]) -> None:
    """Ask the server to cancel what `conn` runs now (from any thread; nothing
    when it runs nothing, or is gone)."""
    with contextlib.suppress(psycopg.Error):
        conn.cancel_safe(timeout=5)


def connection_lost(exc: BaseException) -> bool:
    """The session is gone (server restart, network): reconnect, the job goes on."""
    if isinstance(exc, ConnectionFailed):
        return True
    state = getattr(exc, "sqlstate", None)
    if state and str(state).startswith(("08", "57P")):
        return True
    if isinstance(exc, psycopg.OperationalError) and not state:
        return True
    cause = exc.__cause__
    return bool(isinstance(cause, psycopg.Error) and connection_lost(cause))



# --- the contract's functions, for the CLI and the poller ------------------


def get_job(conn: psycopg.Connection[Row], job_id: int) -> Row | None:
    with translated(conn):
        return conn.execute(queries.GET_JOB, {"id": job_id}).fetchone()


def cancel(conn: psycopg.Connection[Row], job_id: int) -> bool:
    return bool(scalar(conn, queries.CANCEL, {"id": job_id}))


def pause(conn: psycopg.Connection[Row], job_id: int) -> bool:
    return bool(scalar(conn, queries.PAUSE, {"id": job_id}))


def resume(conn: psycopg.Connection[Row], job_id: int) -> bool:
    return bool(scalar(conn, queries.RESUME, {"id": job_id}))


def retry(conn: psycopg.Connection[Row], job_id: int) -> bool:
    return bool(scalar(conn, queries.RETRY, {"id": job_id}))


def heartbeat(
    conn: psycopg.Connection[Row], job_id: int, worker: str, done: int | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> bool:
    return bool(scalar(conn, queries.HEARTBEAT, {
        "id": job_id, "worker": worker, "done": done,
        "checkpoint": None if checkpoint is None else psycopg.types.json.Jsonb(checkpoint)}))


def complete(
    conn: psycopg.Connection[Row], job_id: int, worker: str, result: dict[str, Any] | None = None
) -> bool:
    return bool(scalar(conn, queries.COMPLETE, {"id": job_id, "worker": worker,
                                                "result": psycopg.types.json.Jsonb(result or {})}))


def fail(
    conn: psycopg.Connection[Row], job_id: int, worker: str, error: str, retryable: bool = True
) -> bool:
    return bool(scalar(conn, queries.FAIL, {"id": job_id, "worker": worker, "error": error,
                                            "retryable": retryable}))


def fail_by_sqlstate(
    conn: psycopg.Connection[Row], job_id: int, worker: str, error: str,
    retryable: bool | None, sqlstate: str | None,
) -> tuple[bool, bool]:
    """Record a failed attempt; when ``retryable`` is None the database decides from
    ``sqlstate`` (pgjobs.retryable_sqlstate). Returns (recorded, retryable)."""
    row = one(conn, queries.FAIL_BY_SQLSTATE, {"id": job_id, "worker": worker, "error": error,
                                              "retryable": retryable, "sqlstate": sqlstate})
    return bool(row["recorded"]), bool(row["retryable"])


def complete_many(
    conn: psycopg.Connection[Row], jobs: list[tuple[int, str]],
    results: list[dict[str, Any]] | None = None,
) -> set[int]:
    """Complete a batch of (id, worker) in one statement; returns the ids completed
    (a job fenced off is left out)."""
    params = {"ids": [job_id for job_id, _ in jobs], "workers": [w for _, w in jobs],
              "results": None if results is None
              else [psycopg.types.json.Jsonb(r) for r in results]}
    return {int(r["complete_many"]) for r in rows(conn, queries.COMPLETE_MANY, params)}


# --- asyncio (the dashboard, ui/) ---------------------------------------------------


async def connect_async(dsn: str, *, app: str = "pgjobs ui") -> AsyncConn:
    """An autocommit dict-row asyncio connection, in UTF-8 (CLIENT_ENCODING)."""
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, row_factory=psycopg.rows.dict_row, application_name=app,
            client_encoding=CLIENT_ENCODING)
    except psycopg.Error as exc:
        raise from_connect(exc) from exc


async def rows_async(conn: AsyncConn, sql: str, params: dict[str, Any] | None = None
                     ) -> list[Row]:
    with translated():
        cur = await conn.execute(sql, params or {})
        return await cur.fetchall()


async def listen_async(conn: AsyncConn, channel: str = "pgjobs") -> None:
    """LISTEN on ``channel`` (then read the payloads with :func:`notifies_async`)."""
    from psycopg import sql

    with translated():
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))


async def notifies_async(conn: AsyncConn) -> AsyncIterator[str]:
    """Each NOTIFY payload as it arrives, until the connection fails
    (:class:`ConnectionFailed`)."""
    with translated():
        async for note in conn.notifies():
            yield note.payload
