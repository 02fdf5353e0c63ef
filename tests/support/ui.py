"""Serving the dashboard (pgjobs.ui) inside a test: uvicorn on a loopback port
the kernel picks, in a thread, plain HTTP and SSE clients over http.client."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


@contextmanager
def serving(dsn: str, **settings: Any) -> Iterator[str]:
    """The dashboard for ``dsn`` at the yielded base URL until the block ends."""
    import uvicorn

    from pgjobs.ui.app import Settings, create_app

    # Port 0: the kernel picks one as uvicorn binds. A port found free beforehand
    # (bound and closed) may be taken, by any connection's local end, before
    # uvicorn binds it.
    config = uvicorn.Config(create_app(Settings(dsn=dsn, **settings)), host="127.0.0.1",
                            port=0, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def scoped_login(conn: Any, dsn: str, label: str, grant: str, scopes: str) -> Iterator[str]:
    """The DSN of a login role (pgjobs_client) named after ``label`` with
    ``grant`` ("GRANT ... TO {role}") and pgjobs.allowed_scopes = ``scopes``
    (ALTER ROLE, so both of the dashboard's connections have it); dropped,
    its sessions ended, when the block ends."""
    import os

    import psycopg

    role = f"pgjobs_ui_{label}_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE pgjobs_client")
    conn.execute(grant.format(role=role))
    conn.execute(f"ALTER ROLE {role} SET pgjobs.allowed_scopes = '{scopes}'")
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["user"] = role
    try:
        yield psycopg.conninfo.make_conninfo(**params)
    finally:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE usename = %s", (role,))
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def request(base: str, method: str, path: str, *, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        conn.close()


def get_json(base: str, path: str, headers: dict[str, str] | None = None) -> Any:
    status, _, body = request(base, "GET", path, headers=headers)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def post(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = request(base, "POST", path,
                              headers={"X-Pgjobs-Action": "1"} | (headers or {}))
    return status, json.loads(body) if body else None


class EventStream:
    """One browser's /events (``path``: with a filtered page's query):
    ``next_event`` returns the next `job` event."""

    def __init__(self, base: str, headers: dict[str, str] | None = None,
                 path: str = "/events") -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=15)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("content-type", "").startswith("text/event-stream")

    def next_event(self, timeout: float = 30.0) -> dict[str, Any]:
        data: list[str] = []
        kind = None
        deadline = time.monotonic() + timeout  # pings arrive every 15 s: a bound of our own
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("no event within the time allowed")
            line = self.response.fp.readline().decode()
            if line == "":
                raise EOFError("the event stream ended")
            line = line.rstrip("\n")
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
            elif line == "" and data:
                if kind == "job":
                    event: dict[str, Any] = json.loads("\n".join(data))
                    return event
                data, kind = [], None

    def events_until(self, done: Any, limit: int = 200) -> list[dict[str, Any]]:
        seen = []
        for _ in range(limit):
            event = self.next_event()
            seen.append(event)
            if done(event):
                return seen
        raise AssertionError(f"no final event in {seen}")

    def close(self) -> None:
        self.conn.close()
