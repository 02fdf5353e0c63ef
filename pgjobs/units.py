"""What a job's ``done`` and ``total`` count, by kind: one place for the
dashboard (ui/) and the command line (cli/), which both label rates and
counts with it."""

from __future__ import annotations

# The kinds whose `done` counts rows of the target. An import's `done` counts
# bytes of its source and a fan-out job's its items: labelled (or summed) as
# rows, 100 MB imported read as 100,000,000 rows.
ROW_KINDS = ("delete", "backfill", "export")


def unit(kind: str) -> str:
    """What a job of ``kind`` counts in `done`: rows, an import's bytes of its
    source, a fan-out job's (or any other kind's) items."""
    return "rows" if kind in ROW_KINDS else "bytes" if kind == "import" else "items"
