"""Parquet exports keep a worker's memory flat: Arrow's allocator (mimalloc in
the wheels) is told, before Arrow is first loaded, to hand freed pages back at
once (poller/parquet.py MIMALLOC_SETTINGS); a value the operator set wins.
Measured by bench/export_parquet.py --rss-parallel (peak RSS is not asserted
here: it depends on the machine)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("pyarrow")

PROBE = """
import os, sys
from pgjobs.poller import parquet
assert "pyarrow" not in sys.modules
parquet.load_pyarrow()
print(os.environ.get("MIMALLOC_PURGE_DELAY"), os.environ.get("MIMALLOC_ARENA_EAGER_COMMIT"))
"""


def _probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, check=True,
                          capture_output=True, text=True, timeout=120)
    return done.stdout.split()


def test_arrow_is_loaded_with_the_allocator_settings_that_keep_memory_flat() -> None:
    from pgjobs.poller.parquet import MIMALLOC_SETTINGS

    assert _probe() == [MIMALLOC_SETTINGS["MIMALLOC_PURGE_DELAY"],
                        MIMALLOC_SETTINGS["MIMALLOC_ARENA_EAGER_COMMIT"]] == ["0", "0"]


def test_an_operators_allocator_settings_win() -> None:
    assert _probe(MIMALLOC_PURGE_DELAY="250", MIMALLOC_ARENA_EAGER_COMMIT="1") == ["250", "1"]
