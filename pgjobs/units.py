"""What a job's ``done`` and ``total`` count, by kind, and the article before
a kind: one place for the dashboard (ui/) and the command line (cli/), which
both label rates and counts with it and word "an import job" with it."""

from __future__ import annotations

# The kinds whose `done` counts rows of the target. An import's `done` counts
# bytes of its source and a fan-out job's its items: labelled (or summed) as
# rows, 100 MB imported read as 100,000,000 rows.
# What each built-in kind's `done` counts (which kinds the engine itself runs
# is SQL's answer, pgjobs._engine_kinds(); this is only each kind's unit).
COUNTS = {"delete": "rows", "backfill": "rows", "export": "rows", "import": "bytes"}
ROW_KINDS = tuple(kind for kind, counted in COUNTS.items() if counted == "rows")


def unit(kind: str) -> str:
    """What a job of ``kind`` counts in `done`: rows, an import's bytes of its
    source, a fan-out job's (or any other kind's) items."""
    return COUNTS.get(kind, "items")


def a_job(kind: str) -> str:
    """"a delete job", "an export job": the article messages put before a kind
    (pgjobs._a_job's rule, for the messages the dashboard and the command
    line word themselves)."""
    return f"{'an' if kind[:1] in tuple('aeiou') else 'a'} {kind} job"
