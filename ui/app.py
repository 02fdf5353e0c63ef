"""The dashboard's ASGI app (Starlette): routes, access rules and actions.

Access rules, all enforced here on the server:

* Bound to a loopback address without a token, a request must name a
  loopback host (``Host`` header): a web page elsewhere cannot reach the
  dashboard through DNS rebinding.
* With a token (required by the CLI for any other bind address) every
  request carries it: ``Authorization: Bearer T``, or the cookie that
  ``/?token=T`` sets (HttpOnly, SameSite=Strict) for browsers.
* Actions are POSTs with the header ``X-Pgjobs-Action: 1`` (which a form on
  another site cannot send) and, when the browser sends ``Origin``, a
  same-origin one; ``--read-only`` refuses them all (403) and renders none.
* Everything runs as the DSN's role: pgjobs' SQL functions and row policies
  decide what is seen and what an action may do (their SQLSTATE becomes the
  HTTP status: P0002 404, 42501 403, 55000 409, others 400).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgjobs import queries
from pgjobs.errors import PgjobsError, unknown_job
from pgjobs.ui import metrics, page
from pgjobs.ui.hub import Hub
from pgjobs.units import a_job

PAGE_SIZE = 50
MAX_PAGE = 500
COOKIE = "pgjobs_ui_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
STATUS_BY_SQLSTATE = {"P0002": 404, "42501": 403, "55000": 409, "55006": 409,
                      "08001": 503, "08006": 503}  # the database is unreachable
ACTION_SQL = {"cancel": queries.CANCEL, "pause": queries.PAUSE, "resume": queries.RESUME,
              "retry": queries.RETRY}
PING_SECONDS = 15.0
log = logging.getLogger("pgjobs.ui")
# Sent with every response. The page's one script is allowed by its hash, so
# markup that slipped through escaping could not run script; no other site may
# frame the page (a framed dashboard would let a page elsewhere trick a click
# on cancel); forms and fetches stay on this origin; no Referer carries a URL.
CSP = ("default-src 'none'; script-src 'sha256-"
       + base64.b64encode(hashlib.sha256(page.SCRIPT.encode()).digest()).decode()
       + "'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


@dataclass(frozen=True)
class Settings:
    dsn: str
    read_only: bool = False
    token: str | None = None
    storage: str | None = None   # the worker storage (file:// downloads are served from it)
    access_log: bool = False     # log every request (Guard), not only refused and failed ones
    log_format: str = "text"     # pgjobs' log lines on stderr: text or json (serve)


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ip_address(name).is_loopback
    except ValueError:
        return False


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def as_json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=_json_default), status_code=status,
                    media_type="application/json")


def error(message: str, status: int, hint: str | None = None,
          sqlstate: str | None = None) -> Response:
    body = {"error": message} | ({"hint": hint} if hint else {}) | (
        {"sqlstate": sqlstate} if sqlstate else {})
    return as_json(body, status)


class Guard:
    """The access rules above, as ASGI middleware (before any route runs)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        answered: list[int] = []
        send = _with_security_headers(_noting_status(send, answered))
        started = time.monotonic()
        try:
            await self._answer(request, scope, receive, send)
        finally:
            # What uvicorn's access log said of a refused or failed request (of
            # every request with --access-log, with how long it took: a stream
            # of /events when it ends), through pgjobs' formatter (serve): the
            # path is the client's (ESC, CR/LF from %1b, %0d%0a), shown as text
            # there. Never the query string, which may hold the token (/?token=T).
            client = scope.get("client")
            method, path = scope.get("method", "?"), scope.get("path", "?")
            who = client[0] if client else "unknown"
            if self.settings.access_log:
                log.info("%s %s: %s in %.1f ms (client %s)", method, path,
                         answered[0] if answered else "no response",
                         (time.monotonic() - started) * 1000, who)
            elif answered and answered[0] >= 400:
                log.info("%s %s: %s (client %s)", method, path, answered[0], who)

    async def _answer(self, request: Request, scope: Scope, receive: Receive,
                      send: Send) -> None:
        refusal = self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        token = self.settings.token
        if token and request.method == "GET" and "token" in request.query_params:
            # A browser's first visit: keep the token in a cookie, drop it from the URL.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            # Always a path on this server: "//evil.example" would leave it.
            target = "/" + request.url.path.lstrip("/\\") + (
                "?" + urlencode(rest) if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        token = self.settings.token
        if token:
            given = request.cookies.get(COOKIE) or request.query_params.get("token") or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error("a token is required", 401,
                             hint="open /?token=T once, or send 'Authorization: Bearer T'")
        else:
            host = request.headers.get("host", "")
            hostname = _hostname(host)
            if not is_loopback(hostname):
                return error(f"host {host!r} refused", 403,
                             hint="without --token the dashboard answers only to "
                                  "localhost / 127.0.0.1")
        if request.method == "POST":
            if self.settings.read_only:
                return error("read-only dashboard: actions are disabled", 403,
                             hint="restart `pgjobs ui` without --read-only to allow them")
            if request.headers.get("x-pgjobs-action") != "1":
                return error("actions need the header X-Pgjobs-Action: 1", 403)
            origin = request.headers.get("origin")
            if origin and _netloc(origin) != request.headers.get("host"):
                return error("cross-origin action refused", 403)
        elif request.method not in ("GET", "HEAD"):
            return error("method not allowed", 405)
        return None


def _hostname(host: str) -> str:
    """The host name of a ``Host`` header, "" when it has none or cannot be
    parsed: urlsplit's ValueError on a Host such as "[" (an unclosed IPv6
    address) was an exception in the app, a 500 and a traceback in the log
    for each such request, where it is refused (403)."""
    try:
        return urlsplit("//" + host).hostname or ""
    except ValueError:
        return ""


def _netloc(origin: str) -> str | None:
    """The host and port of an ``Origin`` header, None when it cannot be parsed
    (then it matches no Host: a cross-origin action, refused)."""
    try:
        return urlsplit(origin).netloc
    except ValueError:
        return None


def _noting_status(send: Send, answered: list[int]) -> Send:
    """``send`` noting the response's status in ``answered``."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            answered.append(int(message["status"]))
        await send(message)
    return sending


def _with_security_headers(send: Send) -> Send:
    """``send`` adding :data:`SECURITY_HEADERS` a response did not set itself."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {k.lower() for k, _ in headers}
            message["headers"] = headers + [(k, v) for k, v in SECURITY_HEADERS
                                            if k not in names]
        await send(message)
    return sending


def _filters(request: Request, *, strict: bool = False) -> dict[str, str | None]:
    """The job list's filters; ``strict`` (the JSON list, read by scripts that
    cannot see the filter form the page shows back) refuses (22023) those that
    could only mislead: a parameter the list does not take (`?stauts=failed`
    listed every job), a status no job has (`?status=Failed` listed none), a
    target without its schema (targets read schema-qualified: `?target=items`
    listed none)."""
    filters = {f: (request.query_params.get(f) or None) for f in page.FILTERS}
    if not strict:
        return filters
    taken = (*page.FILTERS, *page.PAGING, "token")
    for name in request.query_params:
        if name not in taken:
            raise PgjobsError(f"unknown parameter {name!r}", sqlstate="22023",
                              hint="the job list takes " + ", ".join(taken[:-1]))
    status, target = filters["status"], filters["target"]
    if status is not None and status not in page.STATUSES:
        raise PgjobsError(f"status {status!r} is no job status", sqlstate="22023",
                          hint="one of " + ", ".join(page.STATUSES))
    if target is not None and "." not in target:
        raise PgjobsError(f"target {target!r} names no schema", sqlstate="22023",
                          hint=f"targets are listed schema-qualified, e.g. public.{target}")
    return filters


INT_HINTS = {  # what to do about a bad number, by its name (_int)
    "job id": "a job's id is the number the job list (/) links and `pgjobs list` prints",
    "before": "the job list's 'older jobs' link gives the id its next page starts before",
    "after": "the 'next items' link of a job's page gives the item id its next page starts after",
}


def _int(value: str | None, name: str, low: int, high: int) -> int | None:
    """``value`` as an integer from ``low`` to ``high`` (None when absent);
    22023 naming ``name``, with a hint saying what to pass, otherwise."""
    if value in (None, ""):
        return None
    hint = INT_HINTS.get(name, f"pass {name} as a whole number from {low} to {high}")
    try:
        number = int(value)
    except ValueError:
        raise PgjobsError(f"{name} must be an integer", sqlstate="22023", hint=hint) from None
    if not low <= number <= high:
        raise PgjobsError(f"{name} must be from {low} to {high}", sqlstate="22023", hint=hint)
    return number


LIFELONG = ("kind", "target", "scope")
"""The list's filters on what a job keeps for life: /events filters by them."""


def event_filter(filters: dict[str, str | None], scope_keys: list[str]
                 ) -> Callable[[dict[str, Any]], bool]:
    """Which events a page of the job list filtered by ``filters`` wants:
    those of jobs its list could hold (queries.UI_JOBS' own test), by what a
    job keeps for life: its kind, its target and its scope, which matches as
    its text or, as a registered target stores it, as one of ``scope_keys``
    ('<target>\\t<canonical scope>': '01' lists integer scope 1). Not by
    status, which changes: the page follows the status of the jobs it shows,
    and sorts a new job by its status itself. A filtered page was sent every
    job's events and hid them (its script's own test), so a tenant's page
    took in the traffic of every tenant the DSN's role may see."""
    kind, target, scope = (filters.get(name) for name in LIFELONG)
    keys = frozenset(scope_keys)

    def wants(event: dict[str, Any]) -> bool:
        return ((kind is None or event.get("kind") == kind)
                and (target is None or event.get("target") == target)
                and (scope is None or event.get("scope") == scope
                     or f"{event.get('target')}\t{event.get('scope')}" in keys))
    return wants


def create_app(settings: Settings) -> Starlette:
    hub = Hub(settings.dsn)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    async def page_of_jobs(request: Request, *, strict: bool = False
                           ) -> tuple[list[dict[str, Any]], int | None, bool, dict[str, Any]]:
        """One page of the job list, in one statement (queries.UI_JOBS), and
        what a ?scope= filter read (``scope_keys``: the scope as each
        registered target the role reads stores it, '01' lists the jobs of
        integer scope 1 as every SQL entry point reads it, which the page's
        stream (/events) and live filter read too; ``scope_unfit``: the
        targets whose scope column cannot hold it, which the empty list
        names; only the ?target= one when it is given)."""
        before = _int(request.query_params.get("before"), "before", 1, 2**63 - 1)
        limit = _int(request.query_params.get("limit"), "limit", 1, MAX_PAGE) or PAGE_SIZE
        filters = _filters(request, strict=strict)
        rows = await hub.rows(queries.UI_JOBS, filters | {"before": before, "limit": limit + 1})
        scoping = {k: list(rows[0][k]) for k in ("scope_keys", "scope_unfit")}
        jobs = [{k: v for k, v in r.items() if k not in scoping} for r in rows
                if r["id"] is not None]
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return jobs, (jobs[-1]["id"] if more else None), before is None, scoping

    async def job_or_none(job_id: int) -> dict[str, Any] | None:
        found = await hub.rows(queries.UI_JOB, {"id": job_id})
        return found[0] if found else None

    async def shown_job(job_id: int) -> dict[str, Any]:
        """A job as its page and row show it: with whether the role may act
        on it (``controllable``, as the list has it), unless the dashboard
        is read-only (no action is offered, nothing to ask)."""
        job = await job_or_none(job_id)
        if job is None:
            raise unknown_job(job_id)
        may = False
        if not settings.read_only:
            [row] = await hub.rows(queries.UI_CONTROLLABLE, {"ids": [job_id]})
            may = job_id in row["ids"]
        return dict(job) | {"controllable": may}

    async def items_of(job: dict[str, Any], params: dict[str, str | None], *,
                       strict: bool = False) -> dict[str, Any] | None:
        """A fan-out job's items as the DSN's role reads them (pgjobs.job_items'
        row policy): counts by status, the first failed item, one keyset page
        of ``params`` (status, after, limit) and the id the next page starts
        after; None for a job that is not a fan-out job."""
        [fanout] = await hub.rows(queries.JOB_FANOUT, {"id": job["id"]})
        if not fanout["fanout"]:
            return None
        status = params.get("status") or None
        if status is not None and status not in queries.ITEM_STATUSES:
            raise PgjobsError(f"status {status[:64]!r} is no item status", sqlstate="22023",
                              hint="one of " + ", ".join(queries.ITEM_STATUSES))
        after = _int(params.get("after"), "after", 0, 2**63 - 1) or 0
        limit = _int(params.get("limit"), "limit", 1, MAX_PAGE) or PAGE_SIZE
        page = [dict(row) for row in await hub.rows(queries.JOB_ITEMS_PAGE, {
            "id": job["id"], "status": status, "after": after, "limit": limit + 1})]
        counted = {row["status"]: int(row["items"]) for row in
                   await hub.rows(queries.JOB_ITEM_COUNTS, {"id": job["id"]})}
        failed = await hub.rows(queries.JOB_FIRST_FAILED_ITEM, {"id": job["id"]})
        more = len(page) > limit
        page = page[:limit]
        if not strict:  # the page shows no payload nor result (the API carries them)
            page = [{k: item[k] for k in ("id", "status", "attempts", "worker", "error")}
                    for item in page]
        return {"job": job["id"], "status": status,
                "counts": {s: counted.get(s, 0) for s in queries.ITEM_STATUSES},
                "first_failed": dict(failed[0]) if failed else None,
                "items": page, "next_after": page[-1]["id"] if more else None}

    async def index(request: Request) -> Response:
        jobs, next_before, first, scoping = await page_of_jobs(request)
        stats = await hub.stats()
        return HTMLResponse(page.index(jobs, stats, _filters(request), next_before, first,
                                       settings.read_only, **scoping))

    async def job_page(request: Request) -> Response:
        job = await shown_job(request.path_params["id"])
        items = await items_of(job, {
            "status": request.query_params.get("items_status"),
            "after": request.query_params.get("items_after")})
        return HTMLResponse(page.detail(job, hub.timeline(job["id"]), settings.read_only,
                                        items))

    async def job_row(request: Request) -> Response:
        job = await shown_job(request.path_params["id"])
        return HTMLResponse(page.row(job, settings.read_only))

    async def api_jobs(request: Request) -> Response:
        jobs, next_before, _, _ = await page_of_jobs(request, strict=True)
        return as_json({"jobs": jobs, "next_before": next_before,
                        "read_only": settings.read_only})

    async def api_job(request: Request) -> Response:
        job = await job_or_none(request.path_params["id"])
        if job is None:
            raise unknown_job(request.path_params["id"])
        return as_json(job | {"events": hub.timeline(job["id"])})

    async def api_items(request: Request) -> Response:
        """A fan-out job's items, a keyset page at a time (``?status=&after=&limit=``),
        with their counts by status and the first failed item: what `pgjobs
        items JOB` prints. A job the DSN's role may not see is unknown (404), as
        on every route; a job that is not a fan-out job is refused (409)."""
        taken = ("status", "after", "limit", "token")
        for name in request.query_params:
            if name not in taken:
                raise PgjobsError(f"unknown parameter {name[:64]!r}", sqlstate="22023",
                                  hint="a job's items take " + ", ".join(taken[:-1]))
        job = await job_or_none(request.path_params["id"])
        if job is None:
            raise unknown_job(request.path_params["id"])
        items = await items_of(job, {name: request.query_params.get(name)
                                     for name in taken[:-1]}, strict=True)
        if items is None:
            return error(f"job {job['id']} is {a_job(str(job['kind']))}, not a fan-out "
                         "job: it has no items", 409, sqlstate="22023",
                         hint="items belong to jobs submitted with pgjobs.submit_items "
                              "(docs/fanout.md); /api/jobs/{id} shows this job's progress")
        return as_json(items)

    async def api_stats(request: Request) -> Response:
        return as_json(await hub.stats())

    async def action(request: Request) -> Response:
        name = request.path_params["action"]
        if name not in ACTION_SQL:
            return error(f"unknown action {name!r}", 404,
                         hint="one of: " + ", ".join(ACTION_SQL))
        try:
            [row] = await hub.rows(ACTION_SQL[name], {"id": request.path_params["id"]})
        except PgjobsError as exc:
            if exc.sqlstate == "P0002":  # no such job, or not one this role may see
                raise unknown_job(request.path_params["id"]) from exc
            raise
        return as_json({"id": request.path_params["id"], "action": name,
                        "changed": bool(next(iter(row.values())))})

    async def download(request: Request) -> Response:
        job = await job_or_none(request.path_params["id"])
        if job is None:
            raise unknown_job(request.path_params["id"])
        result = job.get("result") or {}
        uris = result.get("uris") or ([result["uri"]] if result.get("uri") else [])
        if job["kind"] != "export":
            # As `pgjobs url` says it (the 409 said "has no object to download",
            # no hint nor SQLSTATE, as for an export not finished yet).
            return error(f"job {job['id']} is {a_job(str(job['kind']))}, not an export", 409,
                         hint="only an export has objects to download; /api/jobs lists "
                              "each job's kind", sqlstate="22023")
        if job["status"] != "succeeded" or not uris:
            return error(f"job {job['id']} is {job['status']}: it has no object yet", 409,
                         hint=f"download it once it succeeded (`pgjobs watch {job['id']}` "
                              "follows it)", sqlstate="55000")
        part = _int(request.query_params.get("part"), "part", 0, len(uris) - 1) or 0
        uri = str(uris[part])
        if uri.startswith("file://"):
            return _local_file(uri, settings.storage)
        from pgjobs.poller import storage

        try:
            return RedirectResponse(storage.sign_url(uri, timedelta(hours=1)), 307)
        except PgjobsError as exc:
            return error(exc.message, 409, hint=exc.hint)

    async def events(request: Request) -> Response:
        """The live events of the jobs the DSN's role may see; with the list's
        filters (``?kind=&target=&scope=``, which the page passes on) only
        those of jobs that list could hold (:func:`event_filter`), the
        scope read as the list reads it: its keys, from the list's own
        statement with no job row (limit 0)."""
        filters = _filters(request)
        wants = None
        if any(filters[name] for name in LIFELONG):
            keys: list[str] = []
            if filters["scope"]:
                [row] = await hub.rows(queries.UI_JOBS, filters | {"before": None, "limit": 0})
                keys = list(row["scope_keys"])
            wants = event_filter(filters, keys)
        queue = hub.subscribe(wants)

        async def stream() -> AsyncIterator[str]:
            import asyncio

            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), PING_SECONDS)
                    except asyncio.TimeoutError:
                        yield ": ping\n\n"
                        continue
                    if event is None:  # the server is stopping
                        return
                    yield (f"id: {event['seq']}\nevent: job\n"
                           f"data: {json.dumps(event, default=_json_default)}\n\n")
            finally:
                hub.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def prometheus(request: Request) -> Response:
        stats = await hub.stats()
        counters = {"browsers": hub.browsers, "events": hub.events_forwarded,
                    "reconnects": hub.listen_reconnects}
        return Response(metrics.render(stats, counters),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def health(request: Request) -> Response:
        """Whether the LISTEN connection is up (503 while it is not)."""
        up = hub.listening.is_set()
        return as_json({"listening": up, "browsers": hub.browsers}, 200 if up else 503)

    def translated(handler: Any, *, html: bool = False) -> Any:
        """``handler`` with its PgjobsError answered: the SQLSTATE as the HTTP
        status, the message and hint as JSON, or for a page (``html``) as a
        page that links back to the list (page.refusal)."""
        async def run(request: Request) -> Response:
            try:
                if "id" in request.path_params:
                    request.path_params["id"] = _int(request.path_params["id"], "job id",
                                                     1, 2**63 - 1)
                response: Response = await handler(request)
                return response
            except PgjobsError as exc:
                status = STATUS_BY_SQLSTATE.get(exc.sqlstate or "", 400 if exc.sqlstate else 503)
                if html:
                    return HTMLResponse(page.refusal(exc.message, exc.hint), status)
                return error(exc.message, status, hint=exc.hint, sqlstate=exc.sqlstate)
        return run

    async def unknown_path(request: Request, exc: Exception) -> Response:
        """A path or method no route serves (Starlette's plain 'Not Found'
        said nothing of where to go): a page, or JSON under /api/, that
        names the dashboard's pages."""
        status = int(getattr(exc, "status_code", 404))
        said = (f"no page at {request.url.path}" if status == 404
                else f"{request.method} is not allowed at {request.url.path}")
        hint = ("the dashboard's pages are the job list (/) and each job's page "
                "(/jobs/ID); /api/jobs and /api/jobs/ID answer JSON (docs/ui.md)")
        if request.url.path.startswith("/api/"):
            return error(said, status, hint=hint)
        return HTMLResponse(page.refusal(said, hint), status)

    routes = [
        Route("/", translated(index, html=True)),
        Route("/jobs/{id}", translated(job_page, html=True)),
        Route("/jobs/{id}/row", translated(job_row, html=True)),
        Route("/jobs/{id}/download", translated(download)),
        Route("/api/jobs", translated(api_jobs)),
        Route("/api/jobs/{id}", translated(api_job)),
        Route("/api/jobs/{id}/items", translated(api_items)),
        Route("/api/jobs/{id}/{action}", translated(action), methods=["POST"]),
        Route("/api/stats", translated(api_stats)),
        Route("/events", translated(events)),
        Route("/metrics", translated(prometheus)),
        Route("/healthz", health),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: unknown_path, 405: unknown_path})
    app.state.hub = hub
    app.add_middleware(Guard, settings=settings)
    return app


def _local_file(uri: str, storage_uri: str | None) -> Response:
    """A file:// export, only from under the dashboard's own file:// storage
    (resolved: a symlink or ``..`` cannot lead out of it)."""
    from pgjobs.poller import storage

    path = os.path.realpath(storage.parse(uri).path)
    root = None
    if storage_uri and storage_uri.lower().startswith("file://"):
        root = os.path.realpath(storage.parse(storage_uri).path)
    if root is None or os.path.commonpath([root, path]) != root:
        return error("this export lives outside the dashboard's --storage", 404,
                     hint="start `pgjobs ui` with the worker's --storage, or use `pgjobs url`")
    if not os.path.isfile(path):
        return error("the export's file is gone", 404)
    return FileResponse(path, filename=os.path.basename(path))


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` and listening, for :func:`serve`.

    Bound here, before the command says where it serves: left to uvicorn, a port
    another process held printed the URL as if serving, then uvicorn's own log
    line, and exited 3 (`pgjobs`' "still running" status) with no hint."""
    name = host.strip("[]")
    family = socket.AF_INET6 if ":" in name else socket.AF_INET
    try:
        return socket.create_server((name, port), family=family, backlog=2048)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EADDRINUSE:
            raise PgjobsError(f"cannot listen on {host} port {port}: {reason}",
                              sqlstate="55006",
                              hint="another process listens there (a dashboard already "
                                   "running?): pick another --port (PGJOBS_UI_PORT)") from None
        raise PgjobsError(f"cannot listen on {host} port {port}: {reason}", sqlstate="58000",
                          hint="--host must be an address of this machine (127.0.0.1 by "
                               "default), and a port below 1024 needs privileges") from None


def serve(settings: Settings, listening: socket.socket) -> None:
    """Run the dashboard with uvicorn on the socket of :func:`listening_socket`
    until interrupted.

    uvicorn's log lines (its error log: a request it could not parse, an
    exception in the app) and the dashboard's own (a refused or failed
    request, the LISTEN connection lost) go through pgjobs' text formatter
    (:func:`pgjobs.poller.observe.logs_to_stderr`), which shows what they
    quote as text. uvicorn's logging config gave its loggers handlers and
    formatters of their own that printed a record raw: a client's path (its
    %1b, %0d%0a decoded) could steer the operator's terminal or forge a line
    of the log. Its access log is off (it was: log level warning); the
    dashboard logs refused and failed requests itself (:class:`Guard`), and
    with ``settings.access_log`` every request, with its duration; the lines
    are text or JSON (``settings.log_format``)."""
    import uvicorn

    from pgjobs.poller import observe

    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning",
                                           log_config=None, access_log=False,
                                           timeout_graceful_shutdown=2))
    with observe.logs_to_stderr(settings.log_format):
        server.run(sockets=[listening])
    if not server.started:
        raise PgjobsError("the dashboard did not start (its log says why, above)",
                          sqlstate="58000", hint="run it again; `pgjobs doctor` checks the "
                                                 "database it serves")
