"""/metrics keeps the kind label bounded (h31).

Found attacking as a client: every custom kind a client submits is a label
value of pgjobs_jobs, pgjobs_jobs_finished_last_hour and the rows series, so
a client that made 10,000 kinds made every scrape 10,000 series longer (and
the time series database remember each). Now /metrics shows pgjobs' own
kinds and the 20 custom kinds with the most jobs by name and sums the rest
under kind="_other"; the database bounds the kinds per client as well
(tests/test_trust_client_room.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest

from tests.support import make_rows_target, scalar

Conn = psycopg.Connection[Any]


def _render(conn: Conn) -> str:
    from pgjobs.ui.metrics import render

    stats = json.loads(json.dumps(scalar(conn, "SELECT pgjobs.stats()")))
    return render(stats, {"browsers": 0, "events": 0, "reconnects": 0}).decode()


def _kinds(text: str, name: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for m in re.finditer(rf'^{name}\{{kind="([^"]+)"[^}}]*\}} (\S+)$', text, re.M):
        found[m.group(1)] = found.get(m.group(1), 0.0) + float(m.group(2))
    return found


@pytest.mark.parametrize("kinds", [3, 20, 21, 60])
def test_custom_kinds_beyond_the_top_twenty_are_summed_as_other(conn: Conn,
                                                                kinds: int) -> None:
    from pgjobs.ui.metrics import KINDS_SHOWN, OTHER_KINDS

    make_rows_target(conn)
    # Kind kNN gets NN + 1 jobs: the kinds with the most jobs keep their names.
    conn.execute("SELECT pgjobs.submit('k' || lpad(k::text, 2, '0'), 'user_table_rows', k::text) "
                 "FROM generate_series(0, %s - 1) k, generate_series(0, k) j", (kinds,))
    conn.execute("SELECT pgjobs.submit_export('user_table_rows', '1')")
    text = _render(conn)
    jobs = _kinds(text, "pgjobs_jobs")
    custom = {k for k in jobs if k.startswith("k")}
    assert len(custom) == min(kinds, KINDS_SHOWN), sorted(jobs)
    assert custom == {f"k{i:02d}" for i in range(max(0, kinds - KINDS_SHOWN), kinds)}
    assert jobs["export"] == 1  # pgjobs' own kinds always by name
    total = kinds * (kinds + 1) // 2
    assert sum(v for k, v in jobs.items() if k != "export") == total  # nothing is lost
    if kinds > KINDS_SHOWN:
        hidden = kinds - KINDS_SHOWN
        assert jobs[OTHER_KINDS] == hidden * (hidden + 1) // 2
    else:
        assert OTHER_KINDS not in jobs


def test_finished_and_running_kinds_fold_the_same_way() -> None:
    from pgjobs.ui.metrics import OTHER_KINDS, render

    stats = {
        "queue": [{"kind": f"k{i}", "status": "queued", "target": "t", "jobs": 1}
                  for i in range(30)],
        "finished_last_hour": [{"kind": f"f{i}", "status": "succeeded", "jobs": 1}
                               for i in range(30)],
        "running": [{"kind": f"r{i}", "rows_per_second": 1.0, "worker": "w",
                     "heartbeat_age_seconds": 0} for i in range(30)],
        "rows": {f"r{i}": {"last_minute": 1, "last_hour": 2} for i in range(30)},
    }
    text = render(stats, {"browsers": 0, "events": 0, "reconnects": 0}).decode()
    for name in ("pgjobs_jobs", "pgjobs_jobs_finished_last_hour",
                 "pgjobs_running_rows_per_second", "pgjobs_rows_last_minute",
                 "pgjobs_rows_last_hour"):
        kinds = _kinds(text, name)
        assert len(kinds) <= 21 and OTHER_KINDS in kinds, (name, sorted(kinds))
    assert sum(_kinds(text, "pgjobs_rows_last_hour").values()) == 60
    assert sum(_kinds(text, "pgjobs_running_rows_per_second").values()) == 30
