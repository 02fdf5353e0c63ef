"""The fast CSV batch cut agrees with the record-by-record scan.

`csv_cut` (byte counts, C loops) must end a batch exactly where the last whole
record found by `csv_records` (a Python pass per line) ends, for any mix of
quotes, doubled quotes, embedded newlines, CRLF, blank lines and an
unterminated quote; and the header finder must end where the first record
does. Pure Python, no database.
"""

from __future__ import annotations

import random

import pytest

from pgjobs.poller.importer import _first_record_end, csv_cut, csv_records

ALPHABET = [b"a", b"b", b",", b'"', b'""', b"\n", b"\r\n", b"\r", b" ", b"\xc3\xa9"]


def _sample(rng: random.Random) -> bytes:
    return b"".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 60)))


@pytest.mark.parametrize("seed", range(20))
def test_csv_cut_ends_where_the_last_whole_record_ends(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        data = _sample(rng)
        for final in (False, True):
            records, rest = csv_records(data, final)
            expected = records[-1][1] if records else 0
            assert csv_cut(data, final) == expected, (data, final)
            assert rest == expected or not records


@pytest.mark.parametrize("seed", range(10))
def test_the_header_ends_where_the_first_record_ends(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(500):
        data = _sample(rng)
        for final in (False, True):
            records, _ = csv_records(data, final)
            expected = records[0][1] if records else 0
            assert _first_record_end(data, final) == expected, (data, final)


def test_lines_of_a_cut_batch_match_the_records() -> None:
    data = b'a,b\n"x\ny",1\r\n\n"q""",2\nlast'
    for final in (False, True):
        records, _ = csv_records(data, final)
        cut = csv_cut(data, final)
        lines = data.count(b"\n", 0, cut) + (0 if data[:cut].endswith(b"\n") else 1)
        assert lines == sum(n for _, _, n in records)
