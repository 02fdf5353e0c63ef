"""What a worker tells the operator: Prometheus metrics, log lines, trace spans.

The export, import and worker code calls one-line hooks here and knows nothing
else of observability:

* :func:`count` adds to a counter kept in this process (a dict under a lock:
  cheap, and always on); :func:`serve_metrics` exposes them, with
  ``prometheus-client``, on ``127.0.0.1:PORT/metrics`` (``pgjobs worker
  --metrics-port``). Names start with ``pgjobs_worker_``: they count what this
  process did, while the dashboard's ``pgjobs_*`` metrics are the database's
  view of every worker (``pgjobs.stats()``); no name means two things.
* :func:`setup_logging` formats every record with an ISO 8601 UTC timestamp
  and its level, as text or one JSON object a line (``--log-format``), and
  names the job a line is about (``job_id``): the job its thread works for
  (:func:`bind_job`), else the job its thread is named after, else the ``job
  N`` the message starts with.
* :func:`traced` wraps claim, chunk and upload calls in OpenTelemetry spans
  through ``opentelemetry-api`` when it is installed (a no-op until an SDK
  sets a tracer provider); without it, nothing.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar

from pgjobs.errors import printable

P = ParamSpec("P")
R = TypeVar("R")

# name (without the pgjobs_worker_ prefix): (type, help, label names)
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "jobs_claimed": ("counter", "Jobs this worker claimed (exports and imports).", ()),
    "jobs_finished": ("counter", "Jobs (and parts of parallel exports) this worker ran to an "
                                 "end of its attempt, by outcome.", ("status",)),
    "tasks_running": ("gauge", "Jobs and parts of parallel exports running in this worker "
                               "now.", ()),
    "chunks": ("counter", "Chunks read by exports (one keyset range each) and batches "
                          "committed by imports.", ("kind",)),
    "rows": ("counter", "Rows read by export chunks and taken by import batches.", ("kind",)),
    "parts_uploaded": ("counter", "Parts (and Parquet files) written to storage.", ()),
    "bytes_uploaded": ("counter", "Bytes of the parts and files written to storage.", ()),
    "errors": ("counter", "Errors met: storage (a failed storage call, retried or not), "
                          "database (a lost connection), lock (a chunk or batch that gave up "
                          "waiting for a lock, tried again), job (an attempt that failed).",
               ("kind",)),
    "reconnects": ("counter", "Times a lost database connection was opened again.", ()),
}
PREFIX = "pgjobs_worker_"

_lock = threading.Lock()
_values: dict[tuple[str, tuple[str, ...]], float] = {}
_local = threading.local()
_tracer_provider: Any = None


# --- metrics -------------------------------------------------------------------------


def count(name: str, amount: float = 1, **labels: str) -> None:
    """Add amount to metric name (a key of :data:`METRICS`) with these labels."""
    kind, _, label_names = METRICS[name]
    key = (name, tuple(str(labels.get(n, "")) for n in label_names))
    with _lock:
        _values[key] = _values.get(key, 0.0) + amount


def uploaded(size: int) -> None:
    """One part (or file) of size bytes was written to storage."""
    count("parts_uploaded")
    count("bytes_uploaded", size)


def value(name: str, **labels: str) -> float:
    """The current value of a metric (tests, and the worker's own summary)."""
    label_names = METRICS[name][2]
    with _lock:
        return _values.get((name, tuple(str(labels.get(n, "")) for n in label_names)), 0.0)


class _Collector:
    """The counters above as Prometheus metric families (read at each scrape)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with _lock:
            values = dict(_values)
        for name, (kind, help_text, label_names) in METRICS.items():
            family: Any
            if kind == "counter":
                family = CounterMetricFamily(PREFIX + name, help_text, labels=label_names)
            else:
                family = GaugeMetricFamily(PREFIX + name, help_text, labels=label_names)
            for (key, labels), number in sorted(values.items()):
                if key == name:
                    family.add_metric(list(labels), number)
            if not label_names and not any(k == name for k, _ in values):
                family.add_metric([], 0.0)
            yield family


def registry() -> Any:
    """A prometheus-client registry holding the worker's metrics."""
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector())
    return reg


def start_metrics(port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on host:port from a daemon thread; returns the server
    (``shutdown()`` stops it). Needs prometheus-client (the ``observe`` extra)."""
    from pgjobs.errors import InvalidInput, MissingExtra, install_hint

    try:
        from prometheus_client import start_http_server
    except ImportError:
        raise MissingExtra("--metrics-port needs prometheus-client",
                           hint=install_hint("observe")) from None
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry())
    except OSError as exc:
        raise InvalidInput(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                           hint=_bind_hint(exc, host, port)) from None
    return server


def _bind_hint(exc: OSError, host: str, port: int) -> str:
    """What to change when the metrics endpoint cannot bind: the hint said "choose
    a free --metrics-port" whatever failed, a --metrics-host that names no
    address of this machine included."""
    import errno
    import socket

    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return (f"--metrics-host {host!r} is no address of this machine: give one it has, "
                "e.g. 127.0.0.1 (the default) or 0.0.0.0 for every interface")
    if exc.errno == errno.EACCES and port < 1024:
        return f"port {port} needs root: choose a --metrics-port from 1024 up"
    return f"port {port} is taken: choose a free --metrics-port"


# --- logs ------------------------------------------------------------------------------

_THREAD_JOB = re.compile(r"^pgjobs-(?:export|import|upload)-(\d+)\b")
_MESSAGE_JOB = re.compile(r"^job (\d+)\b")


def bind_job(job_id: int) -> None:
    """The calling thread works for job_id (until it ends): its log lines name it.
    Also counts it as running until :func:`finished`."""
    _local.job_id = int(job_id)
    count("tasks_running")


def finished(status: str) -> None:
    """The calling thread's job (bound by :func:`bind_job`) ended its attempt."""
    count("tasks_running", -1)
    count("jobs_finished", status=status)
    if status in ("failed", "retrying", "lost"):
        count("errors", kind="job")
    _local.job_id = None


def job_of(record: logging.LogRecord) -> int | None:
    """The job a log record is about, or None."""
    explicit = getattr(record, "job_id", None)
    if explicit is not None:
        return int(explicit)
    bound = getattr(_local, "job_id", None)
    if bound is not None:
        return int(bound)
    for pattern, text in ((_THREAD_JOB, record.threadName or ""),
                          (_MESSAGE_JOB, record.getMessage())):
        found = pattern.match(text)
        if found:
            return int(found.group(1))
    return None


def iso_time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


class PlainFormatter(logging.Formatter):
    """A record as its message alone, shown as text: the message through
    printable (one line), and the lines of a traceback each through printable
    and indented. What a line quotes is often a client's (a custom kind's
    error, a scope, an import's file name or rejected row, a worker name):
    raw, a newline there forged a log line of its own in a journal or on a
    terminal, and ESC steered the terminal. Every text line pgjobs logs is
    formatted here (TextFormatter is this with a time, a level and a job),
    whatever logger or call wrote it."""

    def format(self, record: logging.LogRecord) -> str:
        return self.shown(record, record.getMessage())

    def shown(self, record: logging.LogRecord, message: str) -> str:
        line = printable(message)
        if record.exc_info:
            line += "\n" + self.traceback(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + self.traceback(self.formatStack(record.stack_info))
        return line

    @staticmethod
    def traceback(text: str) -> str:
        """A traceback's lines, each shown as text and indented: an exception's
        message that holds a newline continues the traceback, never starts a
        line a reader takes for a record."""
        return "\n".join("    " + printable(line) for line in text.rstrip("\n").split("\n"))


class TextFormatter(PlainFormatter):
    """``2026-12-01T02:30:00.123Z INFO job 5 export started`` (the job id is
    prefixed when the message does not start with it)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        job_id = job_of(record)
        if job_id is not None and not _MESSAGE_JOB.match(message):
            message = f"job {job_id}: {message}"
        return self.shown(record, f"{iso_time(record)} {record.levelname} {message}")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, job_id (when a job
    is involved), thread, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": iso_time(record), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        job_id = job_of(record)
        if job_id is not None:
            entry["job_id"] = job_id
        entry["thread"] = record.threadName
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


FORMATS = ("text", "json")


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (a test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


@contextlib.contextmanager
def logs_to_stderr(fmt: str = "text", level: int = logging.INFO) -> Iterator[logging.Handler]:
    """While the block runs, log pgjobs' records (level and up) to stderr in
    format fmt, with time and level. In a process whose root logger has no
    handler (the CLI) the handler goes there, so warnings of the libraries
    pgjobs uses get the same format; otherwise (embedded, tests) on the
    ``pgjobs`` logger only. Afterwards the loggers are as they were."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; one of: {', '.join(FORMATS)}")
    root, ours = logging.getLogger(), logging.getLogger("pgjobs")
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    owner = root if not root.handlers else ours
    previous = ours.level
    ours.setLevel(level)
    owner.addHandler(handler)
    try:
        yield handler
    finally:
        owner.removeHandler(handler)
        ours.setLevel(previous)


# --- traces ------------------------------------------------------------------------------


def use_tracer_provider(provider: Any) -> None:
    """Record spans with this OpenTelemetry tracer provider instead of the global
    one (None: the global one again). For tests and embedding."""
    global _tracer_provider, _tracer_cache
    _tracer_provider = provider
    _tracer_cache = None


_tracer_cache: tuple[Any, Any] | None = None


def _tracer() -> Any:
    """The pgjobs tracer, or None: without opentelemetry-api, or while no SDK
    has set a tracer provider (then a span would record nothing, and the API's
    no-op spans still cost some thirty Python calls each)."""
    global _tracer_cache
    if _tracer_cache is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer_cache = (None, None)
        else:
            _tracer_cache = (trace, trace.get_tracer("pgjobs",
                                                     tracer_provider=_tracer_provider))
    api, tracer = _tracer_cache
    if api is None or (_tracer_provider is None and isinstance(
            api.get_tracer_provider(), api.ProxyTracerProvider)):
        return None
    return tracer


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """An OpenTelemetry span (attributes prefixed ``pgjobs.``), or nothing
    without opentelemetry-api or a tracer provider. An exception marks the
    span as an error."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    attrs = {f"pgjobs.{k}": v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, attributes=attrs) as current:
        yield current


def traced(name: str, *, kind: str | None = None,
           args: tuple[str, ...] = ()) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A method decorator: each call runs in span ``name`` with attributes the
    job id of its object (``self.job_id``; ``self.part`` of a parallel
    export's part; ``self.name`` of a worker) and the call's arguments named in
    args. With kind (``export``) a call reads a chunk: it is counted in
    ``chunks`` and the row count its tuple starts with in ``rows``."""
    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        positions = {n: i for i, n in enumerate(inspect.signature(method).parameters)
                     if n in args}

        @functools.wraps(method)
        def run(*call_args: P.args, **kwargs: P.kwargs) -> R:
            owner = call_args[0] if call_args else None
            attributes = {"job_id": getattr(owner, "job_id", None),
                          "part": getattr(owner, "part", None)}
            if name == "pgjobs.claim":
                attributes["worker"] = getattr(owner, "name", None)
            for arg, index in positions.items():
                given = kwargs.get(arg, call_args[index] if index < len(call_args) else None)
                attributes[arg] = given if isinstance(given, (str, int, float)) else None
            with span(name, **attributes) as current:
                result = method(*call_args, **kwargs)
                first = result[0] if isinstance(result, tuple) and result else result
                if kind is not None:
                    count("chunks", kind=kind)
                    if isinstance(first, int):
                        count("rows", first, kind=kind)
                if current is not None and isinstance(first, int):
                    current.set_attribute("pgjobs.rows" if kind else "pgjobs.result", first)
                return result
        return run
    return wrap


def imported(before: dict[str, Any], after: dict[str, Any]) -> None:
    """An import batch committed: its records (the totals' difference) count."""
    count("chunks", kind="import")
    count("rows", max(0, int(after.get("records") or 0) - int(before.get("records") or 0)),
          kind="import")
