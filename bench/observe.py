"""The cost of the worker's observability hooks (pgjobs/poller/observe.py), per call.

Run from the repository root:

    python bench/observe.py [--calls 20000] [--repeat 5]

Each hook wraps something that costs a database round trip or a storage call
(a claim, an export chunk, an import batch, an upload), so the figure that
matters is the hook's time next to that. Measured in the same run, median of
``--repeat``, microseconds per call:

- baseline: a bare method call returning (rows, cursor), like ``_read_chunk``;
- the same method under ``@observe.traced("pgjobs.chunk", kind="export")``
  without a tracer provider (the default: counters only, no span);
- the same with the OpenTelemetry SDK recording into memory (when installed);
- ``observe.count``: one counter increment (a dict under a lock).

The machine is shared and noisy: compare the lines of one run, not runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgjobs.poller import observe  # noqa: E402


class Chunky:
    job_id = 1

    def bare(self) -> tuple[int, None]:
        return (50_000, None)

    @observe.traced("pgjobs.chunk", kind="export")
    def traced(self) -> tuple[int, None]:
        return (50_000, None)


def per_call(fn: Any, calls: int, repeat: int) -> float:
    return statistics.median(timeit.repeat(fn, number=calls, repeat=repeat)) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    obj = Chunky()
    rows = [("bare call (baseline)", per_call(obj.bare, args.calls, args.repeat)),
            ("traced, no tracer provider", per_call(obj.traced, args.calls, args.repeat)),
            ("observe.count", per_call(lambda: observe.count("reconnects"), args.calls,
                                       args.repeat))]
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
    except ImportError:
        rows.append(("traced, SDK in memory", float("nan")))
    else:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        observe.use_tracer_provider(provider)

        def recorded() -> None:
            obj.traced()
            exporter.clear()

        rows.append(("traced, SDK in memory", per_call(recorded, args.calls // 4 or 1,
                                                       args.repeat)))
        observe.use_tracer_provider(None)
    base = rows[0][1]
    print(f"{'hook':32} {'us/call':>10} {'x baseline':>11}")
    for name, micros in rows:
        print(f"{name:32} {micros:10.2f} {micros / base:11.1f}")


if __name__ == "__main__":
    main()
