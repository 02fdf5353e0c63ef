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


# Every label whose values a client makes: how a stats() row of each is
# spelled (value i of n), the series it lands in, and the label's name.
def _queue_target(i: int) -> dict[str, Any]:
    return {"queue": [{"kind": "export", "status": "queued", "target": f"t{i:03d}",
                       "jobs": i + 1}]}


def _queue_kind(i: int) -> dict[str, Any]:
    return {"queue": [{"kind": f"k{i:03d}", "status": "queued", "target": "t",
                       "jobs": i + 1}]}


def _running_worker(i: int) -> dict[str, Any]:
    return {"running": [{"kind": "export", "rows_per_second": 0, "worker": f"w{i:03d}#tok{j}",
                         "heartbeat_age_seconds": i} for j in range(i + 1)]}


LABELS = {
    "kind": (_queue_kind, "pgjobs_jobs"),
    "target": (_queue_target, "pgjobs_jobs"),
    "worker": (_running_worker, "pgjobs_worker_heartbeat_age_seconds"),
}


def _values(text: str, name: str, label: str) -> dict[str, float]:
    found: dict[str, list[float]] = {}
    for m in re.finditer(rf'^{name}\{{(.*)\}} (\S+)$', text, re.M):
        # A label value escapes \\, " and newline (the exposition format).
        value = re.search(rf'(?:^|,){label}="((?:[^"\\]|\\.)*)"', m.group(1))
        assert value is not None
        text_value = re.sub(r'\\(.)', lambda e: {"n": "\n"}.get(e.group(1), e.group(1)),
                            value.group(1))
        found.setdefault(text_value, []).append(float(m.group(2)))
    return {k: sum(v) if name == "pgjobs_jobs" else max(v) for k, v in found.items()}


@pytest.mark.parametrize("many", [5, 20, 21, 300])
@pytest.mark.parametrize("label", sorted(LABELS))
def test_every_label_a_client_makes_is_bounded(label: str, many: int) -> None:
    """Value i has i + 1 jobs: the 20 with the most keep their names, the
    others are folded into _other (summed; the largest age for a worker)."""
    # The names of the kind label's rule, which every bounded label shares.
    from pgjobs.ui.metrics import KINDS_SHOWN as LABEL_VALUES_SHOWN
    from pgjobs.ui.metrics import OTHER_KINDS as OTHER
    from pgjobs.ui.metrics import render

    row, name = LABELS[label]
    stats: dict[str, list[Any]] = {"queue": [], "running": []}
    for i in range(many):
        for key, rows in row(i).items():
            stats[key] += rows
    text = render(stats, {"browsers": 0, "events": 0, "reconnects": 0}).decode()
    values = _values(text, name, label)
    named = {v for v in values if v != OTHER}
    first = max(0, many - LABEL_VALUES_SHOWN)
    assert named == {row(i)[next(iter(row(i)))][0][label].split("#")[0]
                     for i in range(first, many)}, sorted(values)
    if many > LABEL_VALUES_SHOWN:
        expected = (first - 1 if label == "worker"
                    else first * (first + 1) // 2)
        assert values[OTHER] == expected
    else:
        assert OTHER not in values


# Real names that look like the overflow value: a table or a worker named
# _other (what the overflow was called until h44), and names close to
# whatever it is called now. None of them may share a series with it.
COLLIDERS = {
    "target": ["_other", '"#other"', "public._other", '"_other"'],
    "worker": ["_other", "other", "_other_"],
}


@pytest.mark.parametrize(("label", "name"),
                         [(label, name) for label, names in sorted(COLLIDERS.items())
                          for name in names])
def test_a_real_name_never_shares_the_overflow_series(label: str, name: str) -> None:
    """A table or worker actually named like the overflow value keeps a
    series of its own: 25 other values (value i has i + 1 jobs) overflow,
    the collider (100 jobs, the most) keeps its name and its count alone."""
    from pgjobs.ui.metrics import LABEL_VALUES_SHOWN, OTHER, render

    row, metric = LABELS[label]
    stats: dict[str, list[Any]] = {"queue": [], "running": []}
    for i in range(25):
        for key, rows in row(i).items():
            stats[key] += rows
    if label == "target":
        stats["queue"].append({"kind": "export", "status": "queued", "target": name,
                               "jobs": 100})
    else:
        stats["running"] += [{"kind": "export", "rows_per_second": 0,
                              "worker": f"{name}#tok{j}", "heartbeat_age_seconds": 1000}
                             for j in range(100)]
    text = render(stats, {"browsers": 0, "events": 0, "reconnects": 0}).decode()
    values = _values(text, metric, label)
    folded = 25 - (LABEL_VALUES_SHOWN - 1)   # values 0..folded-1 overflow
    assert OTHER in values and name in values, sorted(values)
    assert name != OTHER
    if label == "target":
        assert values[name] == 100
        assert values[OTHER] == folded * (folded + 1) // 2
    else:
        assert values[name] == 1000
        assert values[OTHER] == folded - 1


def test_no_real_name_can_take_the_overflow_value() -> None:
    """The overflow value is one no kind (a letter first), no target (a
    regclass's text: an identifier with # is double-quoted) and no worker
    name as shown (cut at its first #) can take."""
    from pgjobs.ui.metrics import OTHER, worker_name

    assert not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", OTHER)
    assert not re.fullmatch(r'([a-z_][a-z0-9_$]*\.)?[a-z_][a-z0-9_$]*', OTHER)
    assert '"' not in OTHER
    assert worker_name({"worker": OTHER + "#tok"}) != OTHER
