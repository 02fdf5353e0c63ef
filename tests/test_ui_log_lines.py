"""`pgjobs ui`'s log lines on its stderr: uvicorn's own and the dashboard's go
through pgjobs' text formatter (time, level, the message shown as text).

uvicorn's logging config gave its loggers handlers and formatters of their
own, which print a record raw (`WARNING:  Invalid HTTP request received.`): a
line quoting a client's path (its access log; %1b and %0d%0a are decoded into
the path) would steer the operator's terminal or forge a line of the log. Now
every line is pgjobs' (`2026-12-07T00:10:00.123Z WARNING ...`), a refused or
failed request is logged by the dashboard with its path shown as text, and
nothing a client sends reaches the terminal raw."""

from __future__ import annotations

import functools
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import wait_for

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) (.*)")
FORGED = "2026-12-07T00:00:00.000Z ERROR forged by the client"


@contextmanager
def pgjobs_ui(dsn: str, *options: str) -> Iterator[tuple[int, list[str]]]:
    """`pgjobs ui` (with ``options``) in a process of its own on a free loopback port, listening;
    stopped (SIGINT, as Ctrl-C) when the block ends, after which the yielded
    list holds what it wrote on stderr."""
    exe = Path(sys.executable).parent / "pgjobs"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "pgjobs.cli.main"]
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("PGJOBS_") or k == "DATABASE_URL")}
    env.update(PGJOBS_DSN=dsn)
    for _ in range(5):  # a port found free may be taken before the child binds it
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        child = subprocess.Popen([*command, "ui", "--port", str(port), *options], env=env,
                                 text=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        wait_for(functools.partial(listening, port, child), 60, "pgjobs ui listening")
        if child.poll() is None:
            break
        _, said = child.communicate(timeout=30)
        assert "[55006]" in said, said
    else:
        pytest.fail("no port found free in 5 tries")
    stderr: list[str] = []
    try:
        yield port, stderr
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        try:
            stderr.append(child.communicate(timeout=30)[1])
        except subprocess.TimeoutExpired:
            child.kill()
            stderr.append(child.communicate(timeout=10)[1])


def listening(port: int, child: subprocess.Popen[str]) -> bool:
    """The port listens (or the child has ended): `pgjobs ui` binds it before it
    serves, and uvicorn answers what waited once it runs. A probe that sends no
    request logs nothing."""
    if child.poll() is not None:
        return True
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False
    return True


def get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.putrequest("GET", path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raw(port: int, request: bytes) -> bytes:
    """What the server answers a request sent as these bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    return answer


def test_a_clients_path_reaches_the_log_as_text_never_raw(dsn: str) -> None:
    with pgjobs_ui(dsn) as (port, stderr):
        # A path holding ESC (clear the screen) and CR/LF then a line of its own.
        path = "/%1b[2J%0d%0a" + FORGED.replace(" ", "%20")
        assert get(port, path)[0] == 404
        # Refused (a host that is not this machine) with a LF in its path.
        assert get(port, "/jobs/%0a" + FORGED.replace(" ", "%20"), host="evil.example")[0] == 403
        # A Host urlsplit cannot parse: refused, not an exception in the app.
        assert get(port, "/", host="[")[0] == 403
        # Bytes h11 cannot parse (a raw ESC in the target): uvicorn's own warning.
        assert raw(port, b"GET /\x1b[2J HTTP/1.1\r\nHost: localhost\r\n\r\n").startswith(
            b"HTTP/1.1 400 ")
        # Served requests are not logged, as before (uvicorn's access log was off).
        assert get(port, "/api/stats")[0] == 200
    [said] = stderr
    assert "\x1b" not in said and "\r" not in said, repr(said)
    lines = said.splitlines()
    assert lines[0] == f"pgjobs ui: http://localhost:{port}/", said
    logged = [LINE.fullmatch(line) for line in lines[1:] if line != "interrupted"]
    assert all(logged), said  # every line is pgjobs' own: none forged, none raw
    messages = [(m.group(1), m.group(2)) for m in logged if m]
    assert messages == [
        ("INFO", rf"GET /\x1b[2J\r\n{FORGED}: 404 (client 127.0.0.1)"),
        ("INFO", rf"GET /jobs/\n{FORGED}: 403 (client 127.0.0.1)"),
        ("INFO", "GET /: 403 (client 127.0.0.1)"),
        ("WARNING", "Invalid HTTP request received."),
    ], said
    assert not any(line.startswith(FORGED) for line in lines), said


ACCESS = re.compile(r"(GET|POST) (.*): (\d{3}|no response) in (\d+\.\d) ms \(client 127\.0\.0\.1\)",
                    re.DOTALL)


def test_with_access_log_every_request_is_one_line_with_its_status_and_duration(
        dsn: str) -> None:
    """`pgjobs ui --access-log`: served requests too, each one INFO line of
    pgjobs' formatter with method, path (as text), status and duration; the
    query string (a token may be there) never."""
    with pgjobs_ui(dsn, "--access-log") as (port, stderr):
        assert get(port, "/api/stats?token=secret-in-the-query")[0] == 200
        assert get(port, "/api/jobs")[0] == 200
        assert get(port, "/%1b[2J%0d%0a" + FORGED.replace(" ", "%20"))[0] == 404
        assert get(port, "/", host="evil.example")[0] == 403
    [said] = stderr
    assert "\x1b" not in said and "\r" not in said and "secret-in-the-query" not in said, said
    lines = said.splitlines()
    assert lines[0] == f"pgjobs ui: http://localhost:{port}/", said
    logged = [LINE.fullmatch(line) for line in lines[1:] if line != "interrupted"]
    assert all(logged), said
    access = [ACCESS.fullmatch(m.group(2)) for m in logged if m]
    assert all(access), said
    assert [(a.group(1), a.group(2), a.group(3)) for a in access if a] == [
        ("GET", "/api/stats", "200"),
        ("GET", "/api/jobs", "200"),
        ("GET", rf"/\x1b[2J\r\n{FORGED}", "404"),
        ("GET", "/", "403"),
    ], said
    assert {m.group(1) for m in logged if m} == {"INFO"}
    assert not any(line.startswith(FORGED) for line in lines), said


def test_access_log_lines_in_json(dsn: str) -> None:
    """--log-format json: the same lines, one JSON object each."""
    import json

    with pgjobs_ui(dsn, "--access-log", "--log-format", "json") as (port, stderr):
        assert get(port, "/api/stats")[0] == 200
        assert get(port, "/missing%0a")[0] == 404
    [said] = stderr
    lines = said.splitlines()
    assert lines[0] == f"pgjobs ui: http://localhost:{port}/", said
    entries = [json.loads(line) for line in lines[1:] if line != "interrupted"]
    assert [(e["level"], e["logger"]) for e in entries] == [("INFO", "pgjobs.ui")] * 2, said
    found = [ACCESS.fullmatch(e["message"]) for e in entries]
    assert [(f.group(2), f.group(3)) for f in found if f] == [
        ("/api/stats", "200"), ("/missing\n", "404")], said
    assert all("time" in e for e in entries)
