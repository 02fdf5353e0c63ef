"""docs/grafana-pgjobs.json (issue 14, item 4) is a Grafana dashboard whose every
query names only metrics that `pgjobs ui` exports (pgjobs.ui.metrics.METRICS) or
that `pgjobs worker --metrics-port` exports (pgjobs.poller.observe.METRICS)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-pgjobs.json"


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    from pgjobs.poller import observe
    from pgjobs.ui.metrics import METRICS

    worker = {observe.PREFIX + name + ("_total" if kind == "counter" else "")
              for name, (kind, _, _) in observe.METRICS.items()}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    used = {m for e in exprs for m in re.findall(r"\bpgjobs_[a-z_]+", e)}
    assert used and used <= set(METRICS) | worker, used - set(METRICS) - worker
    assert used & worker and used & set(METRICS)  # both the dashboard's and the workers' own
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
