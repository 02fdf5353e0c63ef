"""The finish of a resumed native S3 export, on a local moto server (its own
process), before and after it read its object back once.

    python bench/resume_finish.py                 # ~150 MB object, 3 alternated pairs
    python bench/resume_finish.py --mb 200 --pairs 4

A native S3 upload resumed in another attempt has lost its running SHA-256:
``finish`` completes the upload and reads the object back to hash it, checking
every part against the checkpointed digests on the way. The exporter used to
read it back a second time (``check_object``) to check the same parts; now it
does not. Each trial uploads the object's parts (8 MiB, the default part size,
hashed as the exporter hashes them), rebuilds the upload from its checkpointed
state as another attempt does, and times its ``finish`` followed by what the
exporter read afterwards: ``two reads`` (finish, then ``check_object``, the
former exporter) and ``one read`` (finish alone, its parts checked:
``Upload.checked``), and the read-back alone (the same less the time of
CompleteMultipartUpload, which moto spends assembling the parts). The two
alternate, in pairs whose order flips, so a neighbour's load spreads over
both. No database: the bytes are CSV-like lines, about 150 per row (1M rows:
~150 MB). Prints the medians and their ratios, and the load average before and
after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export import moto  # noqa: E402

from pgjobs.poller import s3client, storage, upload_s3  # noqa: E402

PART = 8 << 20


def object_bytes(mb: int) -> bytes:
    """About ``mb`` MB of CSV rows, every row different."""
    rows = []
    row = 0
    size = 0
    while size < mb * 1_000_000:
        line = (f"{row},{row % 3},2026-12-01 23:{row % 60:02d}:00+00,"
                f"{row * 2654435761 % 2**32:010d},{'x' * 100}\n").encode()
        rows.append(line)
        size += len(line)
        row += 1
    return b"".join(rows)


def resumed_upload(bucket: str, data: bytes) -> tuple[upload_s3.NativeS3Upload, list[Any]]:
    """The object's parts uploaded by one attempt, then the upload as the next
    attempt rebuilds it from the checkpoint (its running hash lost)."""
    location = storage.parse(f"s3://{bucket}/exports/{uuid.uuid4().hex}.csv")
    digests: list[Any] = []
    first = upload_s3.NativeS3Upload(location, None, digests)
    for start in range(0, len(data), PART):
        part = bytearray(data[start:start + PART])
        digests.append([len(part), first.write_part(part)])
    resumed = upload_s3.NativeS3Upload(location, first.state(), digests)
    assert resumed._hash is None  # noqa: SLF001 - the read-back at finish is the point
    return resumed, digests


def finish(bucket: str, data: bytes, mode: str) -> tuple[float, float]:
    """(the finish, its read-back alone: the finish less CompleteMultipartUpload)
    seconds."""
    upload, digests = resumed_upload(bucket, data)
    completing: list[float] = []
    complete = s3client.Client.complete

    def timed(self: s3client.Client, key: str, upload_id: str, etags: list[str]) -> None:
        started = time.perf_counter()
        complete(self, key, upload_id, etags)
        completing.append(time.perf_counter() - started)

    s3client.Client.complete = timed  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        size, _ = upload.finish()
        if mode == "two reads":
            assert storage.check_object(upload.location, digests) == size
        else:
            assert upload.checked == digests
        elapsed = time.perf_counter() - started
    finally:
        s3client.Client.complete = complete  # type: ignore[method-assign]
    assert size == len(data)
    storage.delete(upload.location.uri)
    return elapsed, elapsed - sum(completing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=150, help="object size in MB")
    parser.add_argument("--pairs", type=int, default=3, help="alternated pairs of trials")
    args = parser.parse_args()
    data = object_bytes(args.mb)
    load = os.getloadavg()
    with moto() as endpoint:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
        import boto3

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.session.Session().client("s3", endpoint_url=endpoint,
                                       region_name="us-east-1").create_bucket(Bucket=bucket)
        times: dict[str, list[float]] = {"two reads": [], "one read": []}
        reads: dict[str, list[float]] = {"two reads": [], "one read": []}
        for pair in range(args.pairs):
            order = ["two reads", "one read"] if pair % 2 == 0 else ["one read", "two reads"]
            for mode in order:
                elapsed, read_back = finish(bucket, data, mode)
                times[mode].append(elapsed)
                reads[mode].append(read_back)
                print(f"  pair {pair + 1} {mode:<9} finish {elapsed:6.2f}s, "
                      f"read-back {read_back:6.2f}s", flush=True)
    print(f"object {len(data) / 1e6:.0f} MB in {-(-len(data) // PART)} parts of 8 MiB; "
          f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    for what, measured in (("finish", times), ("read-back", reads)):
        for mode, values in measured.items():
            print(f"  resumed {what:<9} {mode:<9} median {statistics.median(values):6.2f}s "
                  f"(min {min(values):.2f}, max {max(values):.2f})")
        ratio = statistics.median(measured["two reads"]) / statistics.median(measured["one read"])
        print(f"  {what}: two reads / one read {ratio:.2f}x")


if __name__ == "__main__":
    main()
