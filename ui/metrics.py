"""``/metrics``: Prometheus text format built from one ``pgjobs.stats()`` call per
scrape (as the DSN's role, so a scrape counts what that role may see) plus the
dashboard's own counters. Every name starts with ``pgjobs_``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pgjobs.errors import printable

# name: help. docs/ui.md lists these; tests/test_ui_http.py checks the list is complete.
METRICS = {
    "pgjobs_jobs": "Unfinished jobs (queued, running, paused) by kind, status and target.",
    "pgjobs_jobs_finished_last_hour": "Jobs finished in the last hour by kind and status.",
    "pgjobs_oldest_queued_age_seconds": "Seconds the oldest due queued job has waited "
                                        "(0 when none waits).",
    "pgjobs_running_rows_per_second": "Sum of the rates of the running jobs, by kind.",
    "pgjobs_rows_last_minute": "Rows done in the last minute, by kind (estimated per job).",
    "pgjobs_rows_last_hour": "Rows done in the last hour, by kind (estimated per job).",
    "pgjobs_throttled_jobs": ("Jobs held by a throttle signal, or handed back to wait for "
                              "their table or the DDL fence, by reason."),
    "pgjobs_paused_jobs": "Paused jobs.",
    "pgjobs_leases_expiring": "Running jobs whose lease ends within 10 seconds or has "
                              "ended: their worker stopped heartbeating.",
    "pgjobs_worker_heartbeat_age_seconds": "Per worker (its name without the claim token), "
                                           "seconds since the least recent heartbeat of the "
                                           "jobs it runs.",
    "pgjobs_client_kept_bytes": "Per client role (the 20 keeping the most; the others summed "
                                "under #other), the bytes its kept jobs hold against "
                                "max_item_bytes_per_client (an administrator's scrape only).",
    "pgjobs_max_item_bytes_per_client": "The ceiling of each client's kept bytes "
                                        "(set_defaults' max_item_bytes_per_client; shown "
                                        "when a client keeps bytes).",
    "pgjobs_ui_browsers": "Browsers connected to /events.",
    "pgjobs_ui_events_total": "NOTIFY events the dashboard forwarded to browsers.",
    "pgjobs_ui_listen_reconnects_total": "Times the LISTEN connection was re-established.",
}


# The kinds pgjobs runs itself, always a label value of their own.
BUILTIN_KINDS = ("backfill", "delete", "export", "import")
# Every label whose values come from what clients submit or run (a job's
# kind, its target, a worker's name) shows at most this many values by name:
# the ones with the most jobs (unfinished, then finished in the last hour),
# then by name; the others are summed (or, for an age, the largest taken)
# under OTHER, so a client that makes many kinds, submits against many
# tables, or claims under many worker names cannot make a scrape's series
# grow with them (set_defaults' max_kinds_per_client bounds kinds per client
# in the database as well). One helper, shown_values, decides for all.
LABEL_VALUES_SHOWN = 20
KINDS_SHOWN = LABEL_VALUES_SHOWN
# A value no real one can take, so the overflow never shares a series with
# a real table, kind or worker: a kind starts with a letter, a target is a
# regclass's text (a name with "#" in it is double-quoted), and a worker is
# shown cut at its first "#" (worker_name). Until h44 it was "_other", the
# name a table or a worker may really have.
OTHER = "#other"
OTHER_KINDS = OTHER


def shown_values(weights: dict[str, tuple[float, ...]], shown: int = LABEL_VALUES_SHOWN,
                 always: tuple[str, ...] = ()) -> set[str]:
    """The values of one bounded label that keep their own name: those in
    ``always``, and the ``shown`` others with the largest weights (tuples
    compared in order), ties by name."""
    ranked = sorted((v for v in weights if v not in always),
                    key=lambda v: (tuple(-w for w in weights[v]), v))
    return set(always) | set(ranked[:shown])


def kinds_shown(stats: dict[str, Any], shown: int = KINDS_SHOWN) -> set[str]:
    """The kinds of ``stats`` that keep their own label value."""
    weight: dict[str, tuple[float, ...]] = {}
    for q in stats.get("queue", []):
        pending, finished = weight.get(q["kind"], (0, 0))
        weight[q["kind"]] = (pending + int(q["jobs"]), finished)
    for f in stats.get("finished_last_hour", []):
        pending, finished = weight.get(f["kind"], (0, 0))
        weight[f["kind"]] = (pending, finished + int(f["jobs"]))
    for r in stats.get("running", []):
        weight.setdefault(r["kind"], (0, 0))
    for kind in stats.get("rows", {}):
        weight.setdefault(kind, (0, 0))
    return shown_values(weight, shown, BUILTIN_KINDS)


def targets_shown(stats: dict[str, Any], shown: int = LABEL_VALUES_SHOWN) -> set[str]:
    """The targets of ``stats`` that keep their own label value: those with
    the most unfinished jobs."""
    weight: dict[str, tuple[float, ...]] = {}
    for q in stats.get("queue", []):
        weight[q["target"]] = (weight.get(q["target"], (0,))[0] + int(q["jobs"]),)
    return shown_values(weight, shown)


def worker_name(row: dict[str, Any]) -> str:
    """A running job's worker, without its claim token."""
    return str(row.get("worker") or "").split("#", 1)[0]


def workers_shown(stats: dict[str, Any], shown: int = LABEL_VALUES_SHOWN) -> set[str]:
    """The workers of ``stats`` that keep their own label value: those running
    the most jobs."""
    weight: dict[str, tuple[float, ...]] = {}
    for r in stats.get("running", []):
        name = worker_name(r)
        weight[name] = (weight.get(name, (0,))[0] + 1,)
    return shown_values(weight, shown)


def _fold(shown: set[str]) -> Callable[[str], str]:
    """A label's value as shown: its own as text (printable: a worker's name or
    a table's is a client's choice, and a scrape read with curl on a
    terminal must not steer it; prometheus-client escapes only the newline,
    the quote and the backslash), or OTHER."""
    return lambda value: printable(value) if value in shown else OTHER


class _Snapshot:
    """A collector (anything with collect()) over one stats() snapshot."""

    def __init__(self, stats: dict[str, Any], counters: dict[str, float]) -> None:
        self.stats = stats
        self.counters = counters

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.stats
        kind_of = _fold(kinds_shown(s))
        target_of = _fold(targets_shown(s))
        worker_of = _fold(workers_shown(s))

        jobs = GaugeMetricFamily("pgjobs_jobs", METRICS["pgjobs_jobs"],
                                 labels=["kind", "status", "target"])
        queue: dict[tuple[str, str, str], float] = {}
        for q in s.get("queue", []):
            labels = (kind_of(q["kind"]), q["status"], target_of(q["target"]))
            queue[labels] = queue.get(labels, 0) + q["jobs"]
        for labels, n in queue.items():
            jobs.add_metric(list(labels), n)
        yield jobs
        finished = GaugeMetricFamily("pgjobs_jobs_finished_last_hour",
                                     METRICS["pgjobs_jobs_finished_last_hour"],
                                     labels=["kind", "status"])
        ended: dict[tuple[str, str], float] = {}
        for f in s.get("finished_last_hour", []):
            labels2 = (kind_of(f["kind"]), f["status"])
            ended[labels2] = ended.get(labels2, 0) + f["jobs"]
        for labels2, n in ended.items():
            finished.add_metric(list(labels2), n)
        yield finished
        oldest = s.get("oldest_queued") or {}
        yield GaugeMetricFamily("pgjobs_oldest_queued_age_seconds",
                                METRICS["pgjobs_oldest_queued_age_seconds"],
                                value=float(oldest.get("age_seconds") or 0))
        rate = GaugeMetricFamily("pgjobs_running_rows_per_second",
                                 METRICS["pgjobs_running_rows_per_second"], labels=["kind"])
        by_kind: dict[str, float] = {}
        for r in s.get("running", []):
            kind = kind_of(r["kind"])
            by_kind[kind] = by_kind.get(kind, 0.0) + float(r["rows_per_second"] or 0)
        for kind, value in sorted(by_kind.items()):
            rate.add_metric([kind], value)
        yield rate
        for window in ("last_minute", "last_hour"):
            rows = GaugeMetricFamily(f"pgjobs_rows_{window}", METRICS[f"pgjobs_rows_{window}"],
                                     labels=["kind"])
            done: dict[str, float] = {}
            for kind, value in s.get("rows", {}).items():
                done[kind_of(kind)] = done.get(kind_of(kind), 0) + (value[window] or 0)
            for kind, n in sorted(done.items()):
                rows.add_metric([kind], n)
            yield rows
        throttled = GaugeMetricFamily("pgjobs_throttled_jobs", METRICS["pgjobs_throttled_jobs"],
                                      labels=["reason"])
        reasons: dict[str, int] = {}
        for t in s.get("throttled", []):
            reason = printable(t["reason"])
            reasons[reason] = reasons.get(reason, 0) + 1
        for reason, n in sorted(reasons.items()):
            throttled.add_metric([reason], n)
        yield throttled
        yield GaugeMetricFamily("pgjobs_paused_jobs", METRICS["pgjobs_paused_jobs"],
                                value=len(s.get("paused", [])))
        yield GaugeMetricFamily("pgjobs_leases_expiring", METRICS["pgjobs_leases_expiring"],
                                value=len(s.get("leases_expiring", [])))
        heartbeat = GaugeMetricFamily("pgjobs_worker_heartbeat_age_seconds",
                                      METRICS["pgjobs_worker_heartbeat_age_seconds"],
                                      labels=["worker"])
        ages: dict[str, float] = {}
        for r in s.get("running", []):
            name = worker_of(worker_name(r))
            age = float(r.get("heartbeat_age_seconds") or 0)
            ages[name] = max(ages.get(name, 0.0), age)
        for worker, age in sorted(ages.items()):
            heartbeat.add_metric([worker], age)
        yield heartbeat
        clients = s.get("client_bytes", [])
        role_of = _fold(shown_values({c["role"]: (float(c["kept_bytes"]),) for c in clients}))
        kept = GaugeMetricFamily("pgjobs_client_kept_bytes", METRICS["pgjobs_client_kept_bytes"],
                                 labels=["role"])
        by_role: dict[str, float] = {}
        for c in clients:
            by_role[role_of(c["role"])] = by_role.get(role_of(c["role"]), 0.0) + c["kept_bytes"]
        for role, value in sorted(by_role.items()):
            kept.add_metric([role], value)
        yield kept
        ceiling = GaugeMetricFamily("pgjobs_max_item_bytes_per_client",
                                    METRICS["pgjobs_max_item_bytes_per_client"])
        if clients:
            ceiling.add_metric([], float(clients[0]["max_item_bytes_per_client"]))
        yield ceiling
        yield GaugeMetricFamily("pgjobs_ui_browsers", METRICS["pgjobs_ui_browsers"],
                                value=self.counters["browsers"])
        for name, key in (("pgjobs_ui_events", "events"),
                          ("pgjobs_ui_listen_reconnects", "reconnects")):
            yield CounterMetricFamily(name, METRICS[name + "_total"], value=self.counters[key])


def render(stats: dict[str, Any], counters: dict[str, Any]) -> bytes:
    """The exposition text of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(stats, counters))
    return bytes(generate_latest(registry))
