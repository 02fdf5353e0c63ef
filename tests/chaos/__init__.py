"""Chaos suite: workers SIGKILLed, backends terminated, PostgreSQL shut down
immediately, in the middle of deletes, backfills and exports. Size from
PGJOBS_CHAOS_SCALE (``small`` by default, for CI; ``full`` from ``make chaos``)."""
