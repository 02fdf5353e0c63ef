"""Shared pieces of the chaos suite: the scale, a reproducible random source,
runner threads that ride out crashes, and a results file for the figures."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import psycopg

SCALE = os.environ.get("PGJOBS_CHAOS_SCALE", "small").strip().lower() or "small"
FULL = SCALE == "full"
RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"


def scaled(small: int, full: int) -> int:
    """small in CI, full under ``make chaos``."""
    return full if FULL else small


def rng(name: str) -> random.Random:
    """A random source per test: seeded from PGJOBS_CHAOS_SEED when set (to replay
    a failing run); in CI (CI set) from the test's name, so every CI run draws
    the same kills and faults, as hypothesis replays the same examples there (a
    schedule drawn fresh made each CI run a new experiment); else fresh, for
    ``make chaos`` and developers to explore. The seed is printed so a failure
    can be replayed."""
    explicit = os.environ.get("PGJOBS_CHAOS_SEED")
    if explicit:
        seed = int(explicit)
    elif os.environ.get("CI"):
        seed = zlib.crc32(name.encode()) % (1 << 30)
    else:
        seed = random.SystemRandom().randrange(1 << 30)
    print(f"{name}: PGJOBS_CHAOS_SEED={seed} PGJOBS_CHAOS_SCALE={SCALE}")
    return random.Random(seed)


def record(name: str, figures: dict[str, Any]) -> None:
    """Print the figures and merge them into bench/results/chaos.json (gitignored)."""
    print(f"{name}: {json.dumps(figures, default=str)}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "chaos.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[name] = {"scale": SCALE, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


class Runner(threading.Thread):
    """``CALL pgjobs.run()`` in a loop on its own connection, reconnecting (with
    backoff) whenever the session dies: what pg_cron or ``pgjobs run --loop`` does
    for a server that crashes. Errors other than a lost session are collected."""

    def __init__(self, dsn: str, name: str, budget: str = "2 seconds"):
        super().__init__(name=name, daemon=True)
        self.dsn = dsn
        self.budget = budget
        self.stop = threading.Event()
        self.crashes = 0
        self.errors: list[str] = []
        self.pid: int | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True,
                                     application_name="chaos runner") as conn:
                    self.pid = conn.info.backend_pid
                    while not self.stop.is_set():
                        conn.execute("CALL pgjobs.run(%s::interval)", (self.budget,))
                        self.stop.wait(0.05)
            except psycopg.OperationalError:
                self.crashes += 1
                self.stop.wait(0.2)
            except psycopg.Error as exc:
                self.errors.append(f"{exc.sqlstate}: {exc}")
                self.stop.wait(0.2)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=30)


def immediate_restart(cluster: Any, down: float = 0.5) -> None:
    """``pg_ctl -m immediate`` (SIGQUIT to the postmaster: every backend dies at
    once, no checkpoint, crash recovery at the next start), then start again on
    the same port. testing.postgresql's own terminate() always does a fast
    shutdown (SIGINT), so the base class's is called with SIGQUIT."""
    import testing.common.database as tcd

    tcd.Database.terminate(cluster, signal.SIGQUIT)
    time.sleep(down)
    cluster.start()


RESTARTS = (psycopg.OperationalError,)
"""What `wait_for(..., tolerate=RESTARTS)` polls through: the server restarting."""
