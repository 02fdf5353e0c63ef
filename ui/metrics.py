"""``/metrics``: Prometheus text format built from one ``pgjobs.stats()`` call per
scrape (as the DSN's role, so a scrape counts what that role may see) plus the
dashboard's own counters. Every name starts with ``pgjobs_``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# name: help. docs/ui.md lists these; tests/test_ui_http.py checks the list is complete.
METRICS = {
    "pgjobs_jobs": "Unfinished jobs (queued, running, paused) by kind, status and target.",
    "pgjobs_jobs_finished_last_hour": "Jobs finished in the last hour by kind and status.",
    "pgjobs_oldest_queued_age_seconds": "Seconds the oldest due queued job has waited "
                                        "(0 when none waits).",
    "pgjobs_running_rows_per_second": "Sum of the rates of the running jobs, by kind.",
    "pgjobs_rows_last_minute": "Rows done in the last minute, by kind (estimated per job).",
    "pgjobs_rows_last_hour": "Rows done in the last hour, by kind (estimated per job).",
    "pgjobs_throttled_jobs": "Running jobs held by a throttle signal, by reason.",
    "pgjobs_paused_jobs": "Paused jobs.",
    "pgjobs_leases_expiring": "Running jobs whose lease ends within 10 seconds or has "
                              "ended: their worker stopped heartbeating.",
    "pgjobs_worker_heartbeat_age_seconds": "Per worker (its name without the claim token), "
                                           "seconds since the least recent heartbeat of the "
                                           "jobs it runs.",
    "pgjobs_ui_browsers": "Browsers connected to /events.",
    "pgjobs_ui_events_total": "NOTIFY events the dashboard forwarded to browsers.",
    "pgjobs_ui_listen_reconnects_total": "Times the LISTEN connection was re-established.",
}


# The kinds pgjobs runs itself, always a label value of their own.
BUILTIN_KINDS = ("backfill", "delete", "export", "import")
# The custom kinds (for external workers) shown by name: the ones with the
# most jobs (unfinished, then finished in the last hour), then by name; the
# others are summed under OTHER_KINDS, so a client that makes many kinds
# cannot make a scrape's series grow with them (set_defaults'
# max_kinds_per_client bounds them per client in the database).
KINDS_SHOWN = 20
# No job kind starts with "_" (a kind starts with a letter): it never meets one.
OTHER_KINDS = "_other"


def kinds_shown(stats: dict[str, Any], shown: int = KINDS_SHOWN) -> set[str]:
    """The kinds of ``stats`` that keep their own label value."""
    weight: dict[str, tuple[int, int]] = {}
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
    custom = sorted((k for k in weight if k not in BUILTIN_KINDS),
                    key=lambda k: (-weight[k][0], -weight[k][1], k))
    return set(BUILTIN_KINDS) | set(custom[:shown])


class _Snapshot:
    """A collector (anything with collect()) over one stats() snapshot."""

    def __init__(self, stats: dict[str, Any], counters: dict[str, float]) -> None:
        self.stats = stats
        self.counters = counters

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.stats
        shown = kinds_shown(s)

        def kind_of(kind: str) -> str:
            return kind if kind in shown else OTHER_KINDS

        jobs = GaugeMetricFamily("pgjobs_jobs", METRICS["pgjobs_jobs"],
                                 labels=["kind", "status", "target"])
        queue: dict[tuple[str, str, str], float] = {}
        for q in s.get("queue", []):
            labels = (kind_of(q["kind"]), q["status"], q["target"])
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
            reasons[str(t["reason"])] = reasons.get(str(t["reason"]), 0) + 1
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
            name = str(r.get("worker") or "").split("#", 1)[0]
            age = float(r.get("heartbeat_age_seconds") or 0)
            ages[name] = max(ages.get(name, 0.0), age)
        for worker, age in sorted(ages.items()):
            heartbeat.add_metric([worker], age)
        yield heartbeat
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
