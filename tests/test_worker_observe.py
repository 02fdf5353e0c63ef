"""What `pgjobs worker` tells the operator (issue 14 item 3, issue 15's "worker
logs carry time and level"): Prometheus metrics scraped over HTTP while a real
export runs, log lines in both formats parsed line by line (ISO 8601 time with
T, level, the job id on every line about a job), OpenTelemetry spans around
claim, chunk and upload recorded with the SDK's in-memory exporter."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from pgjobs.cli.main import main
from pgjobs.poller import observe
from pgjobs.poller.worker import Worker
from tests.support import (
    content,
    job,
    make_items,
    plain_copy,
    start_worker,
    submit_export,
    wait_for,
)

Conn = psycopg.Connection[Any]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
MANY = {"chunk_rows": 7, "part_size": 1024}


@pytest.fixture
def items(conn: Conn) -> None:
    make_items(conn, rows=300, tenants=3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def scrape(port: int) -> dict[str, float]:
    """The samples of http://127.0.0.1:port/metrics, name{labels} -> value."""
    samples = {}
    for line in metrics_text(port).splitlines():
        if line and not line.startswith("#"):
            name, number = line.rsplit(" ", 1)
            samples[name] = float(number)
    return samples


def test_metrics_are_served_while_an_export_runs(conn: Conn, items: None,
                                                 local_dir: str) -> None:
    port = free_port()
    job_id = submit_export(conn, "1", {}, MANY)
    dsn = conn.info.dsn
    worker = start_worker(dsn, local_dir, "--metrics-port", str(port), delays="part=0.1")
    try:
        # Mid-export: parts are counted as they are written, before the job ends.
        during = wait_for(lambda: (lambda s: s if s.get(
            "pgjobs_worker_parts_uploaded_total", 0) >= 2 else None)(_try_scrape(port)),
            what="parts counted while the export runs")
        assert job(conn, job_id)["status"] == "running"
        assert during["pgjobs_worker_tasks_running"] == 1
        assert during["pgjobs_worker_jobs_claimed_total"] == 1
        assert during['pgjobs_worker_chunks_total{kind="export"}'] >= 1
        wait_for(lambda: job(conn, job_id)["status"] == "succeeded", what="export done")
        after = wait_for(lambda: (lambda s: s if s.get(
            'pgjobs_worker_jobs_finished_total{status="succeeded"}') == 1 else None)(
            scrape(port)), what="the outcome counted")
        text = metrics_text(port)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    result = job(conn, job_id)["result"]
    assert content(result) == plain_copy(
        conn, "SELECT * FROM items WHERE tenant = 1 ORDER BY id")
    # The counters agree with what the export reports.
    assert after["pgjobs_worker_bytes_uploaded_total"] == result["bytes"]
    assert after["pgjobs_worker_parts_uploaded_total"] == job(
        conn, job_id)["checkpoint"]["parts"]
    assert after['pgjobs_worker_rows_total{kind="export"}'] == result["rows"]
    assert after['pgjobs_worker_chunks_total{kind="export"}'] >= result["rows"] // 7
    assert after["pgjobs_worker_tasks_running"] == 0
    assert after["pgjobs_worker_reconnects_total"] == 0
    # Every metric of the list is exposed, prefixed pgjobs_worker_, with its help.
    for name, (kind, help_text, _) in observe.METRICS.items():
        full = f"pgjobs_worker_{name}" + ("_total" if kind == "counter" else "")
        assert f"# HELP {full} {help_text}" in text and f"# TYPE {full} {kind}" in text, name
    assert f"metrics on http://127.0.0.1:{port}/metrics" in stderr


def _try_scrape(port: int) -> dict[str, float]:
    try:
        return scrape(port)
    except OSError:  # not listening yet
        return {}


def test_metrics_bind_loopback_and_a_taken_port_is_a_usage_error(
        dsn: str, local_dir: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", local_dir, "worker",
                                           "--once", "--metrics-port", str(port)])
    assert result.exit_code != 0
    assert "cannot serve metrics" in result.stderr and "Traceback" not in result.output
    server = observe.start_metrics(free_port())
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_the_metrics_socket_is_closed_when_the_worker_ends(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that ends (here: its database unreachable) closes the metrics
    endpoint's listening socket: shutdown() only stopped serving, the socket was
    left open to the garbage collector ("ResourceWarning: unclosed socket")."""
    servers: list[Any] = []
    start = observe.start_metrics

    def recorded(port: int, host: str = "127.0.0.1") -> Any:
        servers.append(start(port, host))
        return servers[-1]

    monkeypatch.setattr(observe, "start_metrics", recorded)
    unreachable = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    result = CliRunner().invoke(main, [
        "--dsn", unreachable, "--storage", tmp_path.as_uri(), "worker", "--once",
        "--metrics-port", str(free_port())])
    assert result.exit_code != 0 and "[08001]" in result.stderr, result.output
    assert len(servers) == 1, "the worker failed before serving metrics: the set-up is stale"
    assert servers[0].socket.fileno() == -1, "the metrics socket was left open"


@pytest.mark.parametrize("host, says", [
    ("no-such-host.invalid", "--metrics-host 'no-such-host.invalid' is no address"),
    ("192.0.2.1", "--metrics-host '192.0.2.1' is no address"),  # TEST-NET: no local one
    ("127.0.0.1", "is taken: choose a free --metrics-port"),
])
def test_a_metrics_endpoint_that_cannot_bind_names_what_to_change(host: str,
                                                                  says: str) -> None:
    """The hint said "choose a free --metrics-port" whatever failed, a host that
    is no address of this machine too."""
    from pgjobs.errors import InvalidInput

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidInput) as caught:
            server = observe.start_metrics(port, host)
            server.shutdown()
            server.server_close()
    assert says in (caught.value.hint or ""), caught.value.hint
    assert f"cannot serve metrics on {host}:{port}" in caught.value.message


def run_worker_cli(dsn: str, storage: str, *args: str) -> list[str]:
    result = CliRunner().invoke(main, ["--dsn", dsn, "--storage", storage, "worker", "--once",
                                       "--poll", "0.1", *args])
    assert result.exit_code in (0, 1), result.output
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_json_logs_carry_iso_time_level_and_the_job_id(conn: Conn, items: None,
                                                      local_dir: str) -> None:
    good = submit_export(conn, "1", {}, MANY)
    bad = submit_export(conn, "2", {}, MANY)
    conn.execute("UPDATE pgjobs.jobs SET payload = payload || '{\"columns\": [\"nope\"]}' "
                 "WHERE id = %s", (bad,))
    lines = run_worker_cli(conn.info.dsn, local_dir, "--log-format", "json")
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert entries
    for entry in entries:
        assert ISO.match(entry["time"]), entry
        assert entry["level"] in LEVELS and entry["message"], entry
        mentioned = re.match(r"job (\d+)\b", entry["message"])
        if mentioned:
            assert entry["job_id"] == int(mentioned.group(1)), entry
    about = {row: [e for e in entries if e.get("job_id") == row] for row in (good, bad)}
    assert any("succeeded" in e["message"] for e in about[good])
    assert any(e["message"].startswith(f"job {bad} failed") for e in about[bad]), about[bad]
    # The banner says which worker this is; lines of no job carry no job_id.
    assert any(e["message"].startswith("worker ") and "job_id" not in e for e in entries)
    assert job(conn, good)["status"] == "succeeded"


def test_text_logs_carry_iso_time_and_level(conn: Conn, items: None,
                                           local_dir: str) -> None:
    job_id = submit_export(conn, "1", {}, MANY)
    ours, root = logging.getLogger("pgjobs"), logging.getLogger()
    before = (ours.level, list(ours.handlers), list(root.handlers))
    lines = run_worker_cli(conn.info.dsn, local_dir)
    # The command leaves the process's logging as it found it (an embedding
    # program, or the next command run in this process, keeps its own).
    assert (ours.level, list(ours.handlers), list(root.handlers)) == before
    assert lines
    for line in lines:
        stamp, level, message = line.split(" ", 2)
        assert ISO.match(stamp) and level in LEVELS and message, line
    assert any(line.endswith(f"job {job_id} export started") for line in lines)


def test_a_job_thread_names_its_job_on_lines_that_do_not() -> None:
    """The thread-bound job, the thread's name, the message: whichever says first."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(observe.JsonFormatter().format(record))

    log = logging.getLogger("pgjobs.test_observe")
    keep = Keep()
    log.addHandler(keep)
    log.setLevel(logging.INFO)
    try:
        def bound() -> None:
            observe.bind_job(41)
            log.info("storage failed; retrying")
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("unexpected")
            observe.finished("failed")
            log.info("after the job")

        for target, name in ((bound, "anything"), (lambda: log.info("part 3 written"),
                                                   "pgjobs-upload-42"),
                             (lambda: log.info("a line"), "pgjobs-import-43-w#1")):
            thread = threading.Thread(target=target, name=name)
            thread.start()
            thread.join()
        log.info("job 44: paused")
        log.info("nothing to do")
    finally:
        log.removeHandler(keep)
    parsed = [json.loads(r) for r in records]
    assert [p.get("job_id") for p in parsed] == [41, 41, None, 42, 43, 44, None]
    assert "ValueError: boom" in parsed[1]["exception"]
    assert observe.value("errors", kind="job") >= 1


def test_database_losses_count_as_errors_and_reconnects(local_dir: str) -> None:
    before = observe.value("reconnects"), observe.value("errors", kind="database")
    w = Worker("host=127.0.0.1 port=1 dbname=x connect_timeout=1", local_dir, poll=0.1)
    w.on_event = lambda line: None
    thread = threading.Thread(target=w._loop, daemon=True)
    thread.start()
    wait_for(lambda: observe.value("reconnects") >= before[0] + 2, what="reconnects counted")
    w.stop.set()
    thread.join(15)
    assert observe.value("errors", kind="database") >= before[1] + 2


@pytest.fixture
def spans() -> Iterator[Any]:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observe.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        observe.use_tracer_provider(None)
        provider.shutdown()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_spans_around_claim_chunk_and_upload(conn: Conn, items: None, local_dir: str,
                                             spans: Any, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    job_id = submit_export(conn, "1", {}, MANY | {"format": fmt})
    assert Worker(conn.info.dsn, local_dir, once=True, poll=0.1).run() == 0
    result = job(conn, job_id)["result"]
    finished = spans.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for s in finished:
        by_name.setdefault(s.name, []).append(s)
    assert {"pgjobs.claim", "pgjobs.chunk", "pgjobs.upload"} <= set(by_name)
    assert any(s.attributes.get("pgjobs.result") == 1 for s in by_name["pgjobs.claim"])
    assert all(s.attributes["pgjobs.worker"] for s in by_name["pgjobs.claim"])
    chunks = by_name["pgjobs.chunk"]
    assert all(s.attributes["pgjobs.job_id"] == job_id for s in chunks)
    assert sum(s.attributes["pgjobs.rows"] for s in chunks) == result["rows"]
    uploads = by_name["pgjobs.upload"]
    assert all(s.attributes["pgjobs.job_id"] == job_id and s.attributes["pgjobs.what"]
               for s in uploads)
    assert all(s.status.is_ok for s in finished)


def test_a_failing_upload_span_records_the_error(spans: Any) -> None:
    class Owner:
        job_id = 7

        @observe.traced("pgjobs.upload", args=("what",))
        def write(self, what: str) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError):
        Owner().write("part 1")
    [span] = spans.get_finished_spans()
    assert span.attributes["pgjobs.what"] == "part 1" and span.attributes["pgjobs.job_id"] == 7
    assert not span.status.is_ok
    assert any(e.name == "exception" for e in span.events)


def test_without_opentelemetry_spans_are_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_otel(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_otel)
    observe.use_tracer_provider(None)  # forget the tracer made before
    try:
        with observe.span("pgjobs.claim", job_id=1) as current:
            assert current is None
        assert observe._tracer_cache == (None, None)
    finally:
        monkeypatch.undo()
        observe.use_tracer_provider(None)


def test_with_the_api_but_no_sdk_spans_are_skipped_until_a_provider_is_set(
        spans: Any) -> None:
    observe.use_tracer_provider(None)  # the global provider: the API's no-op proxy
    with observe.span("pgjobs.claim") as current:
        assert current is None
    assert spans.get_finished_spans() == ()


def test_no_worker_metric_reuses_a_dashboard_name() -> None:
    """A name means one thing wherever it is scraped: the worker's counters and the
    dashboard's database view never share one."""
    pytest.importorskip("prometheus_client")
    from pgjobs.ui.metrics import METRICS as DASHBOARD

    worker = {observe.PREFIX + name + ("_total" if kind == "counter" else "")
              for name, (kind, _, _) in observe.METRICS.items()}
    served = {line.split()[2] for line in observe_text().splitlines()
              if line.startswith("# TYPE")}
    assert served == worker
    assert not worker & set(DASHBOARD)
    assert all(n.startswith("pgjobs_worker_") for n in worker)


def observe_text() -> str:
    from prometheus_client import generate_latest

    return bytes(generate_latest(observe.registry())).decode()


def test_import_batches_count_their_records_and_run_in_chunk_spans(
        conn: Conn, tmp_path: Any, spans: Any) -> None:
    from pgjobs.poller.importer import Importer
    from tests.support import allow, claim_import, make_people, submit_import

    make_people(conn, document=False)
    folder = tmp_path / "in"
    folder.mkdir()
    allow(conn, f"file://{folder}")
    source = folder / "people.csv"
    source.write_text("name,age\n" + "".join(f"p{i},{i % 90}\n" for i in range(500)))
    job_id = submit_import(conn, f"file://{source}")
    before = (observe.value("rows", kind="import"), observe.value("chunks", kind="import"))
    outcome = Importer(conn.info.dsn, job_id, claim_import(conn.info.dsn, job_id),
                       f"file://{folder}/store", batch_bytes=1000).run()
    assert outcome.status == "succeeded", outcome
    assert observe.value("rows", kind="import") - before[0] == 500
    batches = observe.value("chunks", kind="import") - before[1]
    assert batches >= 3  # 1000-byte batches of a ~4 KB file
    chunks = [s for s in spans.get_finished_spans() if s.name == "pgjobs.chunk"]
    assert chunks and all(s.attributes["pgjobs.job_id"] == job_id for s in chunks)
