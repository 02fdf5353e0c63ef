"""Server-rendered HTML of the dashboard: the job list (``/``), one job's row
(``/jobs/{id}/row``, which the page's script fetches to insert or refresh a
row) and the detail page (``/jobs/{id}``). Every value is HTML-escaped; the
only script is :data:`SCRIPT`."""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from pgjobs.errors import printable

# ROW_KINDS: the cards "rows last minute" and "rows last hour" sum only those
# kinds (each kind's own figure stays in /api/stats and /metrics).
from pgjobs.units import ROW_KINDS, unit

ACTIONS = {  # action: the statuses it applies to (the SQL functions decide; this hides)
    "cancel": ("queued", "running", "paused"),
    "pause": ("queued", "running"),
    "resume": ("paused",),
    "retry": ("failed", "canceled"),
}
FINISHED = ("succeeded", "failed", "canceled")
FILTERS = ("kind", "status", "target", "scope")
PAGING = ("before", "limit")
STATUSES = ("queued", "running", "paused", "succeeded", "failed", "canceled")
ITEM_ERROR_WIDTH = 120
"""An item's error on the detail page: one line, cut to this many characters
(as `pgjobs items` prints it; /api/jobs/{id}/items carries it whole)."""


def e(value: Any) -> str:
    """A value as HTML text: escaped, and every character that steers rather
    than shows (a control, a line separator, a bidirectional override that
    turns ``gnp.exe`` into what reads as ``exe.png``) written as its escape
    by printable, the rule the command line's text output follows. A job's
    scope, target, error, an item's worker and error are a client's text;
    every value on these pages passes here."""
    return escape(printable("" if value is None else str(value)), quote=True)


def e_lines(value: Any) -> str:
    """:func:`e` for a ``<pre>`` block whose lines are its own (indented JSON,
    a predicate): each line through :func:`e`, the newlines between kept."""
    return "\n".join(e(line) for line in str(value).split("\n"))


def script_json(text: str) -> str:
    """JSON text safe inside a <script> element (which HTML does not unescape)."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else e(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def rate_eta(job: dict[str, Any]) -> tuple[float | None, float | None]:
    ran = job.get("ran_seconds")
    if job["status"] != "running" or not ran or ran <= 0 or not job["done"]:
        return None, None
    rate = job["done"] / ran
    eta = (max(job["total"] - job["done"], 0) / rate) if job.get("total") is not None else None
    return rate, eta


def progress(job: dict[str, Any]) -> tuple[str, str]:
    """(width percent, label) of the progress bar."""
    done, total = job["done"] or 0, job.get("total")
    if job["status"] == "succeeded":
        return "100", f"{done:,}" + (f" / {total:,}" if total is not None else "")
    if total:
        pct = min(100.0, 100.0 * done / total)
        return f"{pct:.1f}", f"{done:,} / {total:,}"
    return "0", f"{done:,}"


def row(job: dict[str, Any], read_only: bool) -> str:
    """A job's row; its actions those its status takes (ACTIONS) when the
    role may use them (``job["controllable"]``, pgjobs.controllable: a role
    that may not was offered buttons that answered 403)."""
    width, label = progress(job)
    rate, eta = rate_eta(job)
    actions = "" if read_only or not job.get("controllable") else "".join(
        f'<button class="act" data-action="{a}" data-id="{job["id"]}">{a}</button>'
        for a, states in ACTIONS.items() if job["status"] in states)
    download = ""
    result = job.get("result") or {}
    if job["kind"] == "export" and job["status"] == "succeeded" and result.get("uri"):
        download = f'<a class="dl" href="/jobs/{job["id"]}/download">download</a>'
    throttled = job.get("throttled") or None
    note = ""
    if isinstance(throttled, dict):
        note = f'<span class="note">throttled: {e(throttled.get("reason"))}</span>'
    elif job.get("error"):
        short = e(str(job["error"])[:80])
        note = f'<span class="note err" title="{e(job["error"])}">{short}</span>'
    return (
        f'<tr id="job-{job["id"]}" data-id="{job["id"]}" data-status="{e(job["status"])}" '
        f'data-kind="{e(job["kind"])}" data-target="{e(job["target"])}" '
        f'data-scope="{e(job["scope"])}">'
        f'<td><a href="/jobs/{job["id"]}">{job["id"]}</a></td>'
        f'<td>{e(job["kind"])}</td><td>{e(job["target"])}</td><td>{e(job["scope"])}</td>'
        f'<td><span class="status s-{e(job["status"])}">{e(job["status"])}</span> {note}</td>'
        f'<td class="prog"><div class="bar"><div class="fill" style="width:{width}%"></div>'
        f'</div><span class="done">{label}</span></td>'
        f'<td class="rate">{f"{rate:,.0f}/s" if rate else ""}</td>'
        f'<td class="eta">{duration(eta)}</td>'
        f'<td>{iso(job["created_at"])}</td>'
        f'<td class="actions">{actions}{download}</td></tr>')


def _fullest(client: dict[str, Any]) -> str:
    """The client keeping the most bytes, and its share of the ceiling."""
    return f"{client['role']} {float(client['used']) * 100:.0f}%"


def _stats_bar(stats: dict[str, Any]) -> str:
    by_status: dict[str, int] = {}
    for q in stats.get("queue", []):
        by_status[q["status"]] = by_status.get(q["status"], 0) + q["jobs"]
    oldest = stats.get("oldest_queued") or {}
    rows = [v for k, v in (stats.get("rows") or {}).items() if k in ROW_KINDS]
    minute = sum((v.get("last_minute") or 0) for v in rows)
    hour = sum((v.get("last_hour") or 0) for v in rows)
    cards = [("queued", by_status.get("queued", 0)), ("running", by_status.get("running", 0)),
             ("paused", by_status.get("paused", 0)),
             ("throttled", len(stats.get("throttled", []))),
             ("oldest queued", duration(oldest.get("age_seconds")) or "-"),
             ("rows last minute", f"{minute:,}"), ("rows last hour", f"{hour:,}")]
    fullest = stats.get("client_bytes") or []
    if fullest:  # an administrator's view: the client nearest its byte ceiling
        cards.append(("fullest client", _fullest(fullest[0])))
    return '<div id="stats">' + "".join(
        f'<div class="card"><b data-stat="{e(k)}">{e(v)}</b><span>{e(k)}</span></div>'
        for k, v in cards) + "</div>"


def index(jobs: list[dict[str, Any]], stats: dict[str, Any], filters: dict[str, str | None],
          next_before: int | None, first_page: bool, read_only: bool,
          scope_keys: list[str] | None = None, scope_unfit: list[str] | None = None) -> str:
    """The job list. ``scope_keys``: a ?scope= filter as each registered target
    stores it (the live filter reads them; /events, asked with the filters,
    reads the same); ``scope_unfit``: the targets, as
    'target (type)', whose scope column cannot hold it, which an empty list
    names (queries.UI_JOBS)."""
    options = "".join(
        f'<label>{f} <input name="{f}" value="{e(filters.get(f) or "")}" size="12"></label>'
        for f in FILTERS)
    more = ""
    if next_before is not None:
        query = {k: v for k, v in filters.items() if v} | {"before": str(next_before)}
        more = f'<a id="older" href="/?{e(urlencode(query))}">older jobs &rarr;</a>'
    body = "".join(row(j, read_only) for j in jobs) or ""
    mode = '<span class="ro">read-only</span>' if read_only else ""
    config = json.dumps({"firstPage": first_page, "readOnly": read_only,
                         "filters": {k: v for k, v in filters.items() if v},
                         "scopeKeys": scope_keys or [],
                         "rowKinds": list(ROW_KINDS)})
    return _layout("pgjobs", f"""
<header><h1>pgjobs</h1>{mode}<span id="live" class="live">connecting</span></header>
{_stats_bar(stats)}
<form id="filters" method="get" action="/">{options}<button>filter</button>
<a href="/">clear</a></form>
<table id="jobs"><thead><tr><th>id</th><th>kind</th><th>target</th><th>scope</th>
<th>status</th><th>progress</th><th>rate</th><th>ETA</th><th>created</th><th></th></tr></thead>
<tbody>{body}</tbody></table>
<p id="empty"{' hidden' if jobs else ''}>{empty(filters, scope_unfit or [])}</p>
{more}
<div id="flash" role="status"></div>
<script id="config" type="application/json">{script_json(config)}</script>
""")


def empty(filters: dict[str, str | None], scope_unfit: list[str]) -> str:
    """What the list says when it shows no job: that nothing matches the
    filters (with the way back to every job) and, for a scope that some
    target's scope column cannot hold (the full-width '１' is no integer), of
    which targets, so an empty list never reads as an error or as no jobs at
    all."""
    if not any(filters.values()):
        return "No jobs to show: jobs appear here as they are submitted."
    said = "No jobs match these filters."
    if filters.get("scope") and scope_unfit:
        shown = ", ".join(scope_unfit[:5]) + (
            f" and {len(scope_unfit) - 5} more" if len(scope_unfit) > 5 else "")
        said += (f" Scope '{filters['scope']}' is no value of the scope column of {shown}:"
                 " no job there can have it (a scope is read as the column stores it,"
                 " '01' of an integer as 1).")
    return e(said) + ' <a href="/">Show every job</a>.'


def _one_line(error: Any, width: int = ITEM_ERROR_WIDTH) -> str:
    if error is None:
        return "-"
    flat = " ".join(str(error).split())
    return flat if len(flat) <= width else flat[:width - 3] + "..."


def items_section(job_id: int, items: dict[str, Any]) -> str:
    """A fan-out job's items on its detail page: counts by status, the first
    failed item with its error, one keyset page of items (id order) and the
    link to the next page. ``items`` is what /api/jobs/{id}/items answers."""
    counts = items["counts"]
    total = sum(counts.values())
    said = ", ".join(f"{n:,} {status}" for status, n in counts.items() if n)
    text = f"{total:,} item{'' if total == 1 else 's'}" + (f": {said}" if said else "")
    failed = items.get("first_failed")
    first = ("" if failed is None else
             f'<p id="first-failed">first failed item {e(failed["id"])}: '
             f'{e(_one_line(failed["error"]))}</p>')
    rows = "".join(
        f"<tr><td>{e(item['id'])}</td><td>{e(item['status'])}</td>"
        f"<td>{e(item['attempts'])}</td><td>{e(item['worker'] or '-')}</td>"
        f"<td>{e(_one_line(item['error']))}</td></tr>" for item in items["items"])
    status = items.get("status")
    more = ""
    if items.get("next_after") is not None:
        query = {"items_after": items["next_after"]} | ({"items_status": status} if status
                                                          else {})
        more = (f'<p><a id="items-next" href="/jobs/{int(job_id)}?{urlencode(query)}">'
                f"next items</a></p>")
    shown = f" ({e(status)})" if status else ""
    return f"""
<h3>items{shown}</h3><p id="item-counts">{e(text)}</p>{first}
<table id="items"><thead><tr><th>id</th><th>status</th><th>attempts</th><th>worker</th>
<th>error</th></tr></thead><tbody>{rows}</tbody></table>{more}"""


def detail(job: dict[str, Any], timeline: list[dict[str, Any]], read_only: bool,
           items: dict[str, Any] | None = None) -> str:
    """One job's page; ``items``: a fan-out job's (items_section)."""
    rate, eta = rate_eta(job)
    fields = ["kind", "target", "scope", "status", "done", "total", "attempts", "max_attempts",
              "priority", "submitted_by", "worker", "created_at", "queued_at", "run_at",
              "started_at", "heartbeat_at", "lease_expires_at", "cancel_requested_at",
              "pause_requested_at", "finished_at", "error"]
    rows = "".join(f"<tr><th>{f}</th><td>{iso(job.get(f))}</td></tr>" for f in fields
                   if job.get(f) is not None)
    if rate:
        rows += (f"<tr><th>rate</th><td>{rate:,.0f} {unit(job['kind'])}/s, "
                 f"ETA {duration(eta)}</td></tr>")
    throttled = job.get("throttled")
    if isinstance(throttled, dict):
        rows += (f"<tr><th>throttled</th><td>{e(throttled.get('reason'))} since "
                 f"{e(throttled.get('since'))}</td></tr>")
    blocks = "".join(
        f"<h3>{name}</h3><pre>{e_lines(json.dumps(job.get(name), indent=2, default=str))}</pre>"
        for name in ("options", "payload", "checkpoint", "result") if job.get(name) is not None)
    if job.get("predicate"):
        blocks = f"<h3>predicate</h3><pre>{e_lines(job['predicate'])}</pre>" + blocks
    stamps = [(job.get(k), k.replace("_at", "")) for k in
              ("created_at", "started_at", "cancel_requested_at", "pause_requested_at",
               "finished_at") if job.get(k)]
    events = "".join(f"<li>{iso(t)}: {e(what)}</li>" for t, what in sorted(stamps))
    events += "".join(
        f"<li>event {e(ev['event'])} ({e(ev['status'])}, {e(ev['done'])}"
        f"{'' if ev.get('total') is None else ' / ' + e(ev['total'])})</li>" for ev in timeline)
    table = (f'<table id="jobs"><tbody>{row(job, read_only)}</tbody></table>')
    config = json.dumps({"firstPage": False, "readOnly": read_only, "detail": job["id"]})
    return _layout(f"pgjobs job {job['id']}", f"""
<header><h1><a href="/">pgjobs</a> &rsaquo; job {job['id']}</h1>
<span id="live" class="live">connecting</span></header>
{table}
<table class="fields">{rows}</table>
{blocks}{"" if items is None else items_section(job["id"], items)}
<h3>timeline</h3><ol id="timeline">{events}</ol>
<div id="flash" role="status"></div>
<script id="config" type="application/json">{script_json(config)}</script>
""")


def refusal(message: str, hint: str | None) -> str:
    """The page of a request the dashboard refuses (an unknown job, a job id
    or filter it cannot read, a path it does not serve): what is wrong, what
    to do next (the error's hint) and the way back to the job list."""
    said = message if message.endswith(".") else message + "."
    return _layout("pgjobs: " + message, f"""
<header><h1><a href="/">pgjobs</a></h1></header>
<p id="refused">{e(said)}</p>{f'<p id="hint">{e(hint)}</p>' if hint else ''}
<p><a href="/">Back to the job list</a></p>
""", script=False)


def _layout(title: str, body: str, *, script: bool = True) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}</style></head>
<body>{body}{f"<script>{SCRIPT}</script>" if script else ""}</body></html>"""


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
header{display:flex;gap:1em;align-items:center}h1{font-size:1.4em;margin:0}
a{color:#0b5cad}.ro{background:#eee;border-radius:4px;padding:2px 6px}
.live{font-size:.8em;color:#888}.live.on{color:#1a7f37}
#stats{display:flex;gap:.8em;margin:1em 0;flex-wrap:wrap}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:7em}
.card b{display:block;font-size:1.3em}.card span{color:#666;font-size:.85em}
#filters{margin:.5em 0 1em}#filters label{margin-right:.6em}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #eee;padding:.35em .5em;text-align:left;vertical-align:middle}
.prog{min-width:14em}.bar{background:#e8e8e8;border-radius:3px;height:10px;width:10em;
display:inline-block;vertical-align:middle;margin-right:.5em;overflow:hidden}
.fill{background:#2f81f7;height:100%;transition:width .3s}
tr[data-status=succeeded] .fill{background:#1a7f37}tr[data-status=failed] .fill,
tr[data-status=canceled] .fill{background:#aaa}
.status{border-radius:10px;padding:1px 8px;font-size:.85em;background:#eee}
.s-running{background:#ddf4ff}.s-succeeded{background:#dafbe1}.s-failed{background:#ffebe9}
.s-paused{background:#fff8c5}.s-canceled{background:#eee;color:#666}
.note{font-size:.8em;color:#9a6700}.err{color:#cf222e}
button.act{margin-right:.3em;font-size:.85em}.fields{width:auto;margin:1em 0}
.fields th{color:#666;font-weight:normal}pre{background:#fff;border:1px solid #eee;
padding:.6em;overflow:auto}#flash{position:fixed;bottom:1em;right:1em;background:#222;
color:#fff;padding:.5em 1em;border-radius:4px;display:none}
"""

SCRIPT = r"""
(function () {
  const config = JSON.parse(document.getElementById('config').textContent);
  const live = document.getElementById('live');
  const tbody = document.querySelector('#jobs tbody');
  function flash(text) {
    const f = document.getElementById('flash');
    f.textContent = text; f.style.display = 'block';
    clearTimeout(flash.t); flash.t = setTimeout(() => { f.style.display = 'none'; }, 4000);
  }
  function refreshRow(id) {
    return fetch('/jobs/' + id + '/row', {credentials: 'same-origin'}).then(r => {
      if (!r.ok) return;
      return r.text().then(html => {
        const tpl = document.createElement('tbody'); tpl.innerHTML = html.trim();
        const fresh = tpl.firstElementChild; if (!fresh) return;
        const old = document.getElementById('job-' + id);
        if (old) old.replaceWith(fresh); else tbody.prepend(fresh);
        const empty = document.getElementById('empty'); if (empty) empty.hidden = true;
      });
    });
  }
  function matches(ev) {
    const f = config.filters || {};
    // a scope matches as its text or as a registered target stores it
    // ('<target>\t<canonical scope>', config.scopeKeys: '01' is integer scope 1)
    return ['kind', 'status', 'target'].every(k => !f[k] || String(ev[k]) === f[k])
      && (!f.scope || String(ev.scope) === f.scope
          || (config.scopeKeys || []).includes(ev.target + '\t' + ev.scope));
  }
  function fmt(s) {
    if (s == null) return '';
    s = Math.floor(s); if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
    return Math.floor(s / 3600) + 'h' + String(Math.floor(s % 3600 / 60)).padStart(2, '0') + 'm';
  }
  function apply(ev) {
    const tr = document.getElementById('job-' + ev.id);
    if (!tr) {
      if (config.firstPage && matches(ev)) refreshRow(ev.id);
      return;
    }
    if (tr.dataset.status !== ev.status) { refreshRow(ev.id); return; }
    const total = ev.total, done = ev.done || 0;
    const pct = ev.status === 'succeeded' ? 100 : (total ? Math.min(100, 100 * done / total) : 0);
    tr.querySelector('.fill').style.width = pct.toFixed(1) + '%';
    tr.querySelector('.done').textContent =
      done.toLocaleString('en-US') + (total != null ? ' / ' + total.toLocaleString('en-US') : '');
    tr.querySelector('.rate').textContent =
      ev.rows_per_second ? Math.round(ev.rows_per_second).toLocaleString('en-US') + '/s' : '';
    tr.querySelector('.eta').textContent = fmt(ev.eta_seconds);
  }
  function connect() {
    // the list's filters on what a job keeps for life: the server sends
    // only the events of jobs this list could hold (the same keys as above)
    const f = config.filters || {};
    const q = new URLSearchParams(['kind', 'target', 'scope'].filter(k => f[k])
                                  .map(k => [k, f[k]])).toString();
    const es = q ? new EventSource('/events?' + q) : new EventSource('/events');
    es.onopen = () => { live.textContent = 'live'; live.classList.add('on'); };
    es.onerror = () => { live.textContent = 'reconnecting'; live.classList.remove('on'); };
    es.addEventListener('job', m => {
      const ev = JSON.parse(m.data);
      if (ev.event === 'resync') {
        document.querySelectorAll('#jobs tbody tr').forEach(tr => refreshRow(tr.dataset.id));
        return;
      }
      apply(ev);
      if (config.detail === ev.id) {
        const li = document.createElement('li');
        li.textContent = 'event ' + ev.event + ' (' + ev.status + ', ' + ev.done +
          (ev.total != null ? ' / ' + ev.total : '') + ')';
        document.getElementById('timeline').appendChild(li);
      }
    });
  }
  document.addEventListener('click', ev => {
    const b = ev.target.closest('button.act'); if (!b) return;
    b.disabled = true;
    fetch('/api/jobs/' + b.dataset.id + '/' + b.dataset.action, {
      method: 'POST', credentials: 'same-origin', headers: {'X-Pgjobs-Action': '1'}
    }).then(r => r.json().then(body => {
      flash(r.ok ? ('job ' + b.dataset.id + ': ' + b.dataset.action +
                    (body.changed ? '' : ' (nothing to do)'))
                 : [body.error || r.statusText, body.hint].filter(Boolean).join(': '));
      refreshRow(b.dataset.id);
    })).catch(err => flash(String(err))).finally(() => { b.disabled = false; });
  });
  function stats() {
    fetch('/api/stats', {credentials: 'same-origin'}).then(r => r.ok ? r.json() : null).then(s => {
      if (!s) return;
      const by = {};
      (s.queue || []).forEach(q => { by[q.status] = (by[q.status] || 0) + q.jobs; });
      const rows = Object.entries(s.rows || {})
        .filter(([kind]) => (config.rowKinds || []).includes(kind)).map(([, v]) => v);
      const set = (k, v) => { const el = document.querySelector('[data-stat="' + k + '"]');
                              if (el) el.textContent = v; };
      set('queued', by.queued || 0); set('running', by.running || 0);
      set('paused', by.paused || 0); set('throttled', (s.throttled || []).length);
      set('oldest queued', s.oldest_queued ? fmt(s.oldest_queued.age_seconds) : '-');
      set('rows last minute', rows.reduce((a, r) => a + (r.last_minute || 0), 0)
                                  .toLocaleString('en-US'));
      set('rows last hour', rows.reduce((a, r) => a + (r.last_hour || 0), 0)
                                .toLocaleString('en-US'));
      const c = (s.client_bytes || [])[0];
      if (c) set('fullest client', c.role + ' ' + Math.round(c.used * 100) + '%');
    });
  }
  connect();
  if (document.getElementById('stats')) setInterval(stats, 5000);
})();
"""
