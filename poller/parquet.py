"""Parquet exports: typed columns, one file per part, resumable at file boundaries.

The database decides everything about the data: which rows
(:func:`pgjobs.export_chunk_sql`, the same keyset chunks, mask and cutoff as
CSV), and the Arrow type of every column (``pgjobs.export_parquet_columns``,
from ``pgjobs._parquet_column``, the one mapping from PostgreSQL types).
Each chunk arrives as COPY's CSV (no header) whose fields are in a *wire*
form chosen for an exact, fast conversion (epoch microseconds for timestamps,
days for dates, exact text for numeric, hex for uuid and bytea, JSON text for
lists); pyarrow's CSV reader parses a chunk in C++ against an explicit schema
and each column is cast to its final type. (CSV costs the server about as
much as a CSV export; JSON lines cost it about 1.6x, and pyarrow 2.5x more
to parse.)

Layout: an export is a folder ``{target}/{scope}/{job id}/`` holding
``part-00000.parquet``, ``part-00001.parquet``, ... Each file is a complete
Parquet file (zstd or snappy by column), closed once its bytes pass the job's
``part_size``; its row groups are cut after the chunk that passes
``row_group_bytes`` of Arrow data. So memory stays flat: at most one row
group of Arrow data and one chunk; the open file is encoded into a local
temporary file, read back whole only to be written out.

Resume: a finished file is written whole (a local file through a temporary
name and a rename; an object store with one PUT), then the checkpoint
records it (name, rows, bytes, SHA-256, and the keyset cursor after its last
row) through ``pgjobs.heartbeat``, the lease fence. A worker that resumes
starts a new file at the cursor of the last recorded one: a file written but
not recorded is written again under the same name. Before completing, every
file is read back and compared with its recorded size and SHA-256; a file
that differs (a stale writer overwrote it) is dropped from the checkpoint
with those after it, and the attempt fails retryably, so the retry rewrites
them. ``result.uris`` lists the files, ``result.uri`` is their folder and
``result.sha256`` the SHA-256 of the files' bytes in order (that of the file
itself when there is one).

:func:`write_files` is the writer alone: it turns a stream of chunks into
files through callables, so that one part of a parallel export can be
written with it too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from pgjobs import db, queries
from pgjobs.errors import MissingExtra, install_hint, words
from pgjobs.poller import observe, storage

if TYPE_CHECKING:
    from pgjobs.poller.export import Exporter, Outcome

log = logging.getLogger("pgjobs.export")

MAX_ROW_GROUP_BYTES = 64 * 1024 * 1024
"""The worker's own ceiling on a row group's Arrow bytes, whatever a job asks."""
_READ_BLOCK = 4 * 1024 * 1024


def folder_uri(prefix: str, target: str, scope: str, job_id: int) -> str:
    """The folder of a Parquet export's files: ``{prefix}/{target}/{scope}/{job id}/``."""
    from pgjobs.poller.export import object_key

    key = object_key(target, scope, job_id, "parquet", False)
    return storage.object_location(prefix, key[:-len(".parquet")]).uri.rstrip("/") + "/"


# Arrow's allocator (mimalloc in the wheels) keeps the pages a row group freed,
# committed, for reuse: two parts of one process then peaked at 165-182 MB, the
# Arrow pool itself never above 36 MB. Handing freed pages back at once (and
# committing arenas lazily) keeps a process exporting one or two parts under
# 150 MB (bench/export_parquet.py --rss-parallel). Read when Arrow's library is
# loaded, so set before the first import; a value the operator set wins.
MIMALLOC_SETTINGS = {"MIMALLOC_PURGE_DELAY": "0", "MIMALLOC_ARENA_EAGER_COMMIT": "0"}


def load_pyarrow() -> Any:
    """The pyarrow modules, or MissingExtra naming the extra to install."""
    if "pyarrow" not in sys.modules:
        for name, value in MIMALLOC_SETTINGS.items():
            os.environ.setdefault(name, value)
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
        import pyarrow.json
        import pyarrow.parquet
    except ImportError as exc:
        raise MissingExtra(
            f"Parquet exports need pyarrow, which this worker cannot import ({words(exc)})",
            hint=install_hint("parquet") + " on the worker's machine, then pgjobs retry "
                                                "the job") from exc
    return pyarrow


# --- types ------------------------------------------------------------------------

_DECIMAL = re.compile(r"^(decimal128|decimal256)\((\d+),(-?\d+)\)$")


def _scalar(pa: Any, name: str) -> Any:
    simple = {"int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
              "float32": pa.float32(), "float64": pa.float64(), "bool": pa.bool_(),
              "string": pa.string(), "date32": pa.date32(), "time64": pa.time64("us"),
              "timestamp": pa.timestamp("us"), "timestamp_utc": pa.timestamp("us", tz="UTC"),
              "binary": pa.binary(), "uuid": pa.uuid(), "json": pa.json_(pa.string())}
    if name in simple:
        return simple[name]
    match = _DECIMAL.match(name)
    if match:
        kind, precision, scale = match.group(1), int(match.group(2)), int(match.group(3))
        return (pa.decimal128 if kind == "decimal128" else pa.decimal256)(precision, scale)
    raise ValueError(f"unknown Parquet column type {name!r} (pgjobs._parquet_column)")


def arrow_type(pa: Any, name: str) -> Any:
    """The Arrow type of a type name of pgjobs._parquet_column."""
    if name.startswith("list<") and name.endswith(">"):
        return pa.list_(_scalar(pa, name[5:-1]))
    return _scalar(pa, name)


def _wire_type(pa: Any, name: str) -> Any:
    """How pyarrow's CSV reader parses the field a column travels as (see
    _parquet_column): what it cannot parse into the final type comes as text."""
    if name in ("timestamp", "timestamp_utc", "time64"):
        return pa.int64()
    if name == "date32":
        return pa.int32()
    if name in ("int16", "int32", "int64", "bool", "float32", "float64"):
        return arrow_type(pa, name)
    return pa.string()  # decimals, uuid, binary, json, lists (JSON text), text


@dataclass
class Schema:
    """The file schema and how to build it from a chunk's JSON lines."""

    columns: list[dict[str, Any]]
    pa: Any
    wire: Any = None
    final: Any = None
    structs: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pa = self.pa
        self.wire = pa.schema([(c["name"], _wire_type(pa, c["arrow"])) for c in self.columns])
        # Document fields listed in `columns` become the children of one struct
        # column, placed where the first of them was listed.
        order: list[str] = []
        types: dict[str, Any] = {}
        for c in self.columns:
            name = c.get("struct") or c["name"]
            if c.get("struct"):
                self.structs.setdefault(name, []).append(c["name"])
            else:
                types[name] = arrow_type(pa, c["arrow"])
            if name not in order:
                order.append(name)
        self.final = pa.schema([
            pa.field(name, types[name]) if name in types
            else pa.field(name, pa.struct([pa.field(f, pa.string())
                                           for f in self.structs[name]]))
            for name in order])

    def table(self, lines: bytes | bytearray) -> Any:
        """One chunk's CSV lines as a table of the final schema."""
        pa = self.pa
        parsed = pa.csv.read_csv(
            # Read in place (no copy of the chunk: its bytes are not changed meanwhile).
            pa.BufferReader(pa.py_buffer(lines)),
            read_options=pa.csv.ReadOptions(use_threads=False, column_names=self.wire.names,
                                            block_size=max(len(lines) + 1, 1 << 20)),
            parse_options=pa.csv.ParseOptions(newlines_in_values=True),
            convert_options=pa.csv.ConvertOptions(
                column_types=self.wire, true_values=["t"], false_values=["f"],
                # COPY writes NULL as an empty field and an empty string as "".
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False))
        arrays: dict[str, Any] = {}
        for c in self.columns:
            if not c.get("struct"):
                arrays[c["name"]] = _convert(pa, parsed.column(c["name"]).combine_chunks(),
                                             c["arrow"])
        out = []
        for f in self.final:
            if f.name in arrays:
                out.append(arrays[f.name])
            else:
                names = self.structs[f.name]
                out.append(pa.StructArray.from_arrays(
                    [parsed.column(n).combine_chunks() for n in names], fields=list(f.type)))
        return pa.Table.from_arrays(out, schema=self.final)


def _hex(pa: Any, array: Any, width: int | None) -> Any:
    """Hex text to bytes: one C call for fixed widths (uuid), else per value."""
    if width is not None:
        filled = pa.compute.fill_null(array, "0" * (2 * width))
        raw = bytes.fromhex("".join(filled.to_pylist()))
        storage_array = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), len(array), [array.is_valid().buffers()[1] if array.null_count
                                           else None, pa.py_buffer(raw)])
        return pa.ExtensionArray.from_storage(pa.uuid(), storage_array)
    return pa.array([None if v is None else bytes.fromhex(v) for v in array.to_pylist()],
                    pa.binary())


def _json_lists(pa: Any, array: Any, target: Any) -> Any:
    """Lists sent as JSON text: wrapped into JSON lines by Arrow kernels and read
    by pyarrow's JSON reader against the list type (no Python loop per value)."""
    if len(array) == 0:
        return pa.array([], target)
    filled = pa.compute.fill_null(array, "null")
    wrapped = pa.compute.binary_join_element_wise('{"v":', filled, "}\n", "")
    used = pa.compute.sum(pa.compute.binary_length(wrapped)).as_py()
    # The values lie back to back in the data buffer, from the first offset on
    # (int32 offsets: a string array).
    at = wrapped.offset * 4
    first = int.from_bytes(wrapped.buffers()[1][at:at + 4].to_pybytes(), "little", signed=True)
    data = wrapped.buffers()[2][first:first + used]
    table = pa.json.read_json(
        pa.BufferReader(data),
        read_options=pa.json.ReadOptions(use_threads=False, block_size=max(used + 1, 1 << 20)),
        parse_options=pa.json.ParseOptions(explicit_schema=pa.schema([("v", target)])))
    return table.column("v").combine_chunks()


def _convert(pa: Any, array: Any, name: str) -> Any:
    target = arrow_type(pa, name)
    if name in ("list<float32>", "list<float64>"):
        # Floats travel as their texts (NaN and infinities, which JSON numbers
        # cannot be); a database of the previous release sends JSON numbers.
        try:
            texts = _json_lists(pa, array, pa.list_(pa.string()))
        except pa.ArrowInvalid:
            return _json_lists(pa, array, target)
        return texts.cast(target)
    if name.startswith("list<"):
        return _json_lists(pa, array, target)
    if name == "uuid":
        return _hex(pa, array, 16)
    if name == "binary":
        return _hex(pa, array, None)
    if name == "json":
        return pa.ExtensionArray.from_storage(target, array)
    if array.type == target:
        return array
    return pa.compute.cast(array, target)


# --- the writer ---------------------------------------------------------------------


@dataclass
class FileDone:
    """A finished file: its bytes, and where the keyset walk stands after it."""

    data: bytes
    rows: int
    cursor: str | None
    eof: bool


def write_files(schema: Schema, chunks: Iterator[tuple[bytes | bytearray, str | None]], *,
                compression: str, row_group_bytes: int, file_bytes: int,
                on_file: Callable[[FileDone], None], have_files: bool = False) -> None:
    """Turn chunks (CSV lines, cursor after them or None at the end) into
    Parquet files of about ``file_bytes``: each finished file is passed to
    ``on_file`` before the next chunk is read. Row groups are cut after the
    chunk that passes ``row_group_bytes`` of Arrow data. At least one file is
    written (an empty one when there are no rows): with ``have_files`` (files
    were written before a resume) a last chunk without rows gives
    ``FileDone`` with no data, meaning "no file, the walk is over"."""
    pa = schema.pa
    pending: list[Any] = []
    pending_bytes = 0
    sink: Any = None
    writer: Any = None
    file_rows = 0

    def open_file() -> None:
        # The open file's encoded bytes go to a local temporary file, not to
        # memory: memory stays flat whatever part_size and the compression ratio.
        nonlocal sink, writer
        # Closed when the file is done, or by the finally below.
        sink = tempfile.TemporaryFile(prefix="pgjobs-parquet-")  # noqa: SIM115
        writer = pa.parquet.ParquetWriter(
            pa.PythonFile(sink, mode="w"), schema.final,
            compression=None if compression == "none" else compression,
            write_statistics=True, store_schema=True)

    def flush_group() -> None:
        nonlocal pending, pending_bytes
        if not pending:
            return
        group = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
        writer.write_table(group, row_group_size=max(1, group.num_rows))
        pending, pending_bytes = [], 0
        del group
        # Hand the row group's Arrow memory back (the pool keeps freed pages
        # otherwise, and peak RSS would carry them into the next row group).
        pa.default_memory_pool().release_unused()

    try:
        for lines, cursor in chunks:
            if writer is None:
                open_file()
            if lines:
                table = schema.table(lines)
                pending.append(table)
                pending_bytes += table.nbytes
                file_rows += table.num_rows
                del table
            # The chunk's text is parsed: drop it before the next chunk is read.
            lines = b""
            eof = cursor is None
            # A row group never holds more Arrow bytes than a file's size either.
            if pending_bytes >= min(row_group_bytes, file_bytes) or eof:
                flush_group()
            if eof or sink.tell() >= file_bytes:
                flush_group()
                writer.close()
                sink.seek(0)
                data = sink.read()
                sink.close()
                writer, sink = None, None
                if eof and file_rows == 0 and have_files:
                    # The last chunk had no rows after a full file: no empty file.
                    data = b""
                on_file(FileDone(data, file_rows, cursor, eof))
                data = b""  # written: not kept while the next file fills
                have_files = True
                file_rows = 0
            if eof:
                return
    finally:
        if writer is not None:
            # Stopped mid-file: close the writer before its file, or it
            # writes its footer into the closed file when it is collected
            # ("Exception ignored in ParquetWriter.__del__"). The footer of
            # a file thrown away may fail to write: nothing to keep.
            with contextlib.suppress(Exception):
                writer.close()
        if sink is not None:
            sink.close()  # stopped mid-file: its temporary file goes too


def read_back(files: list[dict[str, Any]]) -> tuple[str, tuple[int, str] | None]:
    """Read every recorded file back, in order: the SHA-256 of their bytes one after
    the other, and the first file that is not what was written (its index and
    why), or None."""
    whole = hashlib.sha256()
    for i, f in enumerate(files):
        one = hashlib.sha256()
        size = 0
        try:
            for block in storage.open_range(f["uri"], 0, _READ_BLOCK):
                one.update(block)
                whole.update(block)
                size += len(block)
        except (storage.StorageError, storage.CannotResume, OSError) as exc:
            return whole.hexdigest(), (i, f"cannot read it back ({exc})")
        if (size, one.hexdigest()) != (f["bytes"], f["sha256"]):
            return whole.hexdigest(), (i, f"it holds {size} bytes (sha256 {one.hexdigest()}), "
                                          f"{f['bytes']} (sha256 {f['sha256']}) were written")
    return whole.hexdigest(), None


# --- the job ------------------------------------------------------------------------


_FILE_NUMBER = re.compile(r"([0-9]{5,})\.parquet")
"""The number in a file name after its writer's stem (``file_uri``)."""


class _Files(storage.Upload):
    """The files of the export, as the exporter's upload: on cancel or a permanent
    failure the exporter's cleanup removes the files the job provably made: those
    it recorded (its conditional write created each) and those it may have made
    without recording them (``unrecorded``: each only while it holds the bytes
    whose digest the checkpoint kept).
    Anything else in the folder is never touched."""

    def __init__(self, files: Callable[[], list[dict[str, Any]]],
                 unrecorded: Callable[[], Any]):
        self._files = files
        self._unrecorded = unrecorded

    def cleanup(self) -> None:
        for f in self._files():
            with contextlib.suppress(Exception):
                storage.delete(str(f["uri"]))
        with contextlib.suppress(Exception):
            self._unrecorded()


def _unrecorded(ck: dict[str, Any]) -> list[dict[str, Any]]:
    """The files a checkpoint says the job may have made without recording them:
    its ``unrecorded`` ones, and the one it was ``writing`` when its worker died
    (with the digest of the bytes written there: ``writing_sha256``; a release
    before this one recorded the name alone, which proves nothing, and that
    file is then left to the conditional write, which accepts it only when it
    holds the very bytes the job writes there)."""
    found = [dict(f) for f in ck.get("unrecorded") or [] if isinstance(f, dict)]
    recorded = {f.get("uri") for f in ck.get("files") or [] if isinstance(f, dict)}
    writing = ck.get("writing")
    if (isinstance(writing, str) and isinstance(ck.get("writing_sha256"), str)
            and writing not in recorded and writing not in {f.get("uri") for f in found}):
        found.append({"uri": writing, "bytes": int(ck.get("writing_bytes") or 0),
                      "sha256": ck["writing_sha256"]})
    return found


class ParquetExport:
    """Runs a claimed Parquet export with the exporter's connections, fence,
    storage retries and endings (:class:`pgjobs.poller.export.Exporter`).

    A part of a parallel export is written by a subclass
    (:class:`pgjobs.poller.parallel.ParquetPart`): it names its files after its
    part, starts at its part's first key and ends its part, not the job."""

    start: str | None = None
    """Where the keyset walk starts: the scope's first key (a part: after its lower bound)."""

    def __init__(self, ex: Exporter):
        self.ex = ex

    def file_uri(self, number: int) -> str:
        """The URI of the export's file ``number`` (from 0, in key order)."""
        return f"{self.folder}part-{number:05d}.parquet"

    def checkpoint(self) -> dict[str, Any]:
        ex = self.ex
        return {"v": 1, "format": "parquet", "uri": self.folder, "prefix": ex.prefix,
                "chunk_rows": ex.chunk_rows, "part_size": ex.part_size,
                "chunk_bytes": ex.chunk_bytes, "row_group_bytes": self.row_group_bytes,
                **ex.state}

    def run(self) -> Outcome:
        from pgjobs.poller.export import LeaseLost

        ex = self.ex
        pa = load_pyarrow()
        job = ex.job
        payload = job["payload"]
        ck = job["checkpoint"] or {}
        if ck.get("v") != 1 or ck.get("format") != "parquet":
            ck = {}
        prefix = ck.get("prefix") or payload.get("destination") or ex.storage_uri
        folder = ck.get("uri") or folder_uri(prefix, job["target"], job["scope"], ex.job_id)
        self.folder = folder.rstrip("/") + "/"
        ex._check_allowed(prefix, self.file_uri(0))
        ex.check_unclaimed(self.file_uri(0))
        ex.prefix = storage.parse(prefix).uri
        ex.location = storage.parse(self.folder)
        self.compression = str(ex.settings.compression)
        self.row_group_bytes = min(int(ck.get("row_group_bytes")
                                       or ex.settings.row_group_bytes or MAX_ROW_GROUP_BYTES),
                                   MAX_ROW_GROUP_BYTES)
        ex.state = {"cursor": ck.get("cursor"), "rows": int(ck.get("rows", 0)),
                    "bytes": int(ck.get("bytes", 0)), "files": list(ck.get("files") or []),
                    "phase": ck.get("phase", "streaming"), "eof": bool(ck.get("eof")),
                    "limit": ex.limit, "unrecorded": _unrecorded(ck)}
        # Its cleanup runs when the job ended (canceled, failed for good): no
        # lease is left to fence on, and no owner follows.
        ex.upload = _Files(lambda: ex.state["files"],
                           functools.partial(self._remove_unrecorded, fenced=False))
        if ex.state["unrecorded"]:
            # A dead worker's file (or files the read-back dropped): removed
            # before anything is written, while they hold what this job wrote.
            self._remove_unrecorded()
            if not ex.control.heartbeat(done=ex.state["rows"], checkpoint=self.checkpoint()):
                raise LeaseLost("heartbeat refused")
        columns = ex.control.call(lambda c: db.scalar(c, queries.EXPORT_PARQUET_COLUMNS,
                                                       {"id": ex.job_id}))
        schema = Schema(list(columns), pa)
        if not ex.state["eof"]:
            write_files(schema, self._chunks(), compression=self.compression,
                        row_group_bytes=self.row_group_bytes, file_bytes=ex.part_size,
                        on_file=self._file_done, have_files=bool(ex.state["files"]))
        ex.state["phase"] = "finalizing"
        if not ex.control.heartbeat(done=ex.state["rows"], checkpoint=self.checkpoint()):
            raise LeaseLost("heartbeat refused")
        return self._finish()

    def _chunks(self) -> Iterator[tuple[bytes | bytearray, str | None]]:
        from pgjobs.poller.export import Stopped, _Part

        ex = self.ex
        cursor = ex.state["cursor"]
        rows = int(ex.state["rows"])
        while True:
            if ex.stop.is_set():
                raise Stopped()
            ex.control.keepalive()
            part = _Part(False)
            count, cursor = ex._read_chunk(cursor, part)
            rows += count
            if ex.on_progress is not None:
                ex.on_progress(rows, part.raw)
            yield part.data, cursor
            if cursor is None:
                return

    def _file_done(self, done: FileDone) -> None:
        from pgjobs.poller.export import LeaseLost

        ex = self.ex
        if done.data:
            number = len(ex.state["files"])
            uri = self.file_uri(number)
            # Fenced before the write too, not only after: a file's name is its
            # position, so a worker that stalled past its lease (between reading
            # the file's rows and here) would write over the file its successor
            # wrote and recorded, after that one's read-back, in a succeeded
            # export. The file is written only under a lease just renewed. And
            # named in the checkpoint before it is written ("writing", with the
            # digest of its bytes): a worker killed between the write and the
            # record below left a file no record named; the digest is what
            # proves, later, that the file there is the job's (the next attempt
            # and pgjobs.prune remove it only while it holds those bytes).
            sha256 = hashlib.sha256(done.data).hexdigest()
            if not ex.control.heartbeat(checkpoint={
                    **self.checkpoint(), "writing": uri, "writing_bytes": len(done.data),
                    "writing_sha256": sha256}):
                raise LeaseLost("heartbeat refused before writing a file")
            # Conditional (storage.create): an object at the name is never
            # written over. One holding exactly these bytes is this write done
            # (an answer lost with its connection); anything else is another's,
            # and the job fails for good (42710), leaving it as it is.
            created = ex.storage_retry(functools.partial(storage.create, uri, done.data),
                                       f"file {number}")
            if not created and not ex.storage_retry(
                    functools.partial(storage.holds, uri, sha256), f"file {number}"):
                self._raise_if_own_leftover(uri)
                raise ex._taken(uri)
            if ex.delays.get("written"):  # a test kills the worker here
                time.sleep(ex.delays["written"])
            observe.uploaded(len(done.data))
            ex.state["files"].append({"uri": uri, "rows": done.rows, "bytes": len(done.data),
                                      "sha256": sha256, "cursor": done.cursor})
            ex.state["rows"] += done.rows
            ex.state["bytes"] += len(done.data)
        ex.state["cursor"] = done.cursor
        ex.state["eof"] = done.eof
        ex.state["limit"] = ex.limit
        if not ex.control.heartbeat(done=ex.state["rows"], checkpoint=self.checkpoint()):
            raise LeaseLost("heartbeat refused")
        if ex.delays.get("part"):
            time.sleep(ex.delays["part"])

    def _remove_unrecorded(self, *, fenced: bool = True) -> int:
        """Remove the files this job wrote and no longer records
        (``state["unrecorded"]``: the one a worker that died before recording
        it was writing, or those the read-back dropped), each only while it
        holds the bytes whose digest the checkpoint kept: anything else at the
        name is another's and stays. Forgets each one removed or gone. The
        folder is not searched by name: a file at this writer's names that no
        record proves the job's is never removed (:meth:`_foreign`). Returns
        how many went. ``fenced``: each removal only while the job is still
        this attempt's (:func:`storage.fenced`): the next owner writes the
        same names, often the same bytes, which a stale attempt's
        ``delete_holding`` would take for its own leftover."""
        ex = self.ex
        fence = ex._fence if fenced else None
        kept: list[dict[str, Any]] = []
        removed = 0
        for f in ex.state.get("unrecorded") or []:
            uri = str(f["uri"])
            try:
                # A worker killed while it wrote the file left its temporary
                # file, under a token no record names (storage.create).
                ex.storage_retry(functools.partial(
                    storage.fenced, fence, functools.partial(storage.remove_temporaries, uri)),
                    f"file {uri}")
                if ex.storage_retry(functools.partial(
                        storage.fenced, fence, functools.partial(
                            storage.delete_holding, uri, str(f["sha256"]),
                            retries=fence is None)), f"file {uri}"):
                    log.warning("job %s: removed %s, written by an earlier attempt and not "
                                "part of the export", ex.job_id, uri)
                    removed += 1
                    continue
                if ex.storage_retry(functools.partial(storage.exists, uri), f"file {uri}"):
                    log.warning("job %s: left %s alone: it does not hold what an attempt of "
                                "the job wrote there (another's object)", ex.job_id, uri)
            except storage.StorageError:
                kept.append(f)  # tried again by the next attempt, or by prune
        ex.state["unrecorded"] = kept
        return removed

    def _raise_if_own_leftover(self, uri: str) -> None:
        """The object at ``uri`` is not these bytes, but may still be a file an
        earlier attempt of this job wrote and :meth:`_remove_unrecorded` could
        not remove (storage failing, or credentials that may write and not
        delete): the checkpoint keeps its digest under ``unrecorded``. Then it
        is the job's own, not another's: a retryable storage error (the next
        attempt removes it first), never the 42710 of another's object."""
        ex = self.ex
        for f in ex.state.get("unrecorded") or []:
            if str(f.get("uri")) == uri and ex.storage_retry(
                    functools.partial(storage.holds, uri, str(f["sha256"])), f"file {uri}"):
                raise storage.StorageError(
                    f"{uri} still holds the file an earlier attempt of job {ex.job_id} "
                    "wrote there and could not remove; the next attempt removes it first",
                    retryable=True,
                    hint="Check that the worker's storage credentials may delete objects "
                         "as well as write them.")

    def _foreign(self) -> list[str]:
        """The files at this writer's names (``file_uri``: a part's own) numbered
        past its recorded files that are still in the folder once the job's own
        went (:meth:`_remove_unrecorded`): no record proves them the job's, so
        they are another's, never removed. The folder is listed: such names
        need not follow the recorded ones without a gap."""
        ex = self.ex
        first = len(ex.state["files"])
        stem = self.file_uri(0)[:-len("00000.parquet")]
        folder = storage.parse(self.folder)
        paths = ex.storage_retry(functools.partial(storage.list_paths, self.folder),
                                 "the listing of the export's folder")
        found = []
        for path in paths:
            uri = storage.Location(folder.scheme, folder.base, path).uri
            match = _FILE_NUMBER.fullmatch(uri[len(stem):]) if uri.startswith(stem) else None
            if match is not None and int(match.group(1)) >= first:
                found.append(uri)
        return sorted(found)

    def _finish(self) -> Outcome:
        ex = self.ex
        files = ex.state["files"]
        self._remove_unrecorded()
        # The folder must hold the files the result lists and no other: a
        # reader takes it whole (result.uri). A file there that the job cannot
        # prove it made is another's: it stays, and the job fails for good
        # naming it (never completes with it in the export's folder).
        foreign = self._foreign()
        if foreign:
            raise storage.StorageError(
                f"refusing to complete: {', '.join(foreign[:5])}"
                f"{' and more' if len(foreign) > 5 else ''} in the export's folder "
                f"{self.folder} {'is' if len(foreign) == 1 else 'are'} not files job "
                f"{ex.job_id} wrote (another pgjobs database writing to the same storage "
                "numbers its jobs alike, or someone put them there); they were left as they are",
                retryable=False, sqlstate="42710",
                hint="give each database's exports a folder of their own (the worker's "
                     "--storage, or the export's \"destination\"); or move those files away "
                     f"and run the job again (pgjobs.retry({ex.job_id}))")
        sha256, bad = read_back(files)
        if bad is not None:
            self._drop_from(*bad)
        result = {"uri": self.folder, "uris": [f["uri"] for f in files],
                  "rows": ex.state["rows"], "bytes": ex.state["bytes"], "sha256": sha256,
                  "format": "parquet", "compression": self.compression, "gzip": False,
                  "parts": len(files)}
        return self._complete(result)

    def _complete(self, result: dict[str, Any]) -> Outcome:
        """Every file read back as written: complete the job (fenced)."""
        from pgjobs.poller.export import LeaseLost, Outcome

        ex = self.ex
        sha256 = result["sha256"]
        ok = ex.control.call(lambda c: db.complete(c, ex.job_id, ex.worker, result))
        if not ok:
            job = ex.control.call(lambda c: db.get_job(c, ex.job_id))
            if not (job and job["status"] == "succeeded" and job["result"]
                    and job["result"].get("sha256") == sha256):
                raise LeaseLost("lease lost before completing")
        return Outcome(ex.job_id, "succeeded", result=result)

    def _drop_from(self, index: int, why: str) -> NoReturn:
        """File ``index`` is not what was written: forget it and those after it (the
        retry writes them again from the cursor before it), fail retryably."""
        from pgjobs.poller.export import LeaseLost

        ex = self.ex
        files = ex.state["files"]
        uri = files[index]["uri"]
        kept = files[:index]
        # The file that failed the read-back is the job's all the same: its
        # record proves the job's conditional write created it (or an earlier
        # release's write put it there), as a single object's `created` does
        # (Exporter._remove_if_created); changed since, it is removed so that
        # the retry creates it again. The files after it, which still read
        # back, are kept as unrecorded with their digests and removed on that
        # proof (by the retry before it writes, or by pgjobs.prune).
        # Best effort (the retry's create finds it), and only while the job is
        # this attempt's: the next owner writes this very name again.
        with contextlib.suppress(storage.StorageError):
            ex.storage_retry(functools.partial(
                storage.fenced, ex._fence,
                functools.partial(storage.delete, uri, retries=False)), f"file {index}")
        unrecorded = list(ex.state.get("unrecorded") or []) + [
            {"uri": f["uri"], "bytes": f["bytes"], "sha256": f["sha256"]}
            for f in files[index + 1:]]
        ex.state.update({"files": kept, "rows": sum(int(f["rows"]) for f in kept),
                         "bytes": sum(int(f["bytes"]) for f in kept),
                         "cursor": kept[-1]["cursor"] if kept else self.start, "eof": False,
                         "phase": "streaming", "limit": ex.chunk_rows,
                         "unrecorded": unrecorded})
        if not ex.control.heartbeat(done=ex.state["rows"], checkpoint=self.checkpoint()):
            raise LeaseLost("heartbeat refused")
        with contextlib.suppress(storage.StorageError):
            self._remove_unrecorded()
            if not ex.control.heartbeat(done=ex.state["rows"], checkpoint=self.checkpoint()):
                raise LeaseLost("heartbeat refused")
        message = f"{uri}: verification failed: {why}"
        log.warning("job %s: %s; the retry writes it again", ex.job_id, message)
        raise storage.StorageError(message, retryable=True)
