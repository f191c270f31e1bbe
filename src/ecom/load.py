"""Land raw CSV exports into bronze, exactly once (SPEC section 5).

Every source column lands as `String` so no value can fail to land, next to lineage columns
(file, row number, checksum, partition date, batch, ingestion time). Each file is checked
first (name, readable, UTF-8, header) in one streaming pass that also takes its sha256;
then the engine parses it itself: `INSERT ... SELECT FROM file()` on the embedded target,
`INSERT ... SELECT FROM input()` with the file streamed by the client on a server.

The ingest log (`bronze.ingest_log`) is the ledger: a file's rows count only once its
`landed` row is written, and rows of a batch without one (a crash mid-file) are removed
before the next load, so a file is either complete or absent. A file is rejected for what is
wrong with it (its name, bytes, header, CSV), never for what is wrong with the warehouse: a
full disk or a permission error stops the load with one line, and the next load goes on.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import NamedTuple, TextIO

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from ecom.config import Settings
from ecom.contract import COLUMNS, FIRST_DAY, LAST_DAY, LINEAGE, export_name, name_day, name_digits, parse_name
from ecom.lock import WarehouseUnavailable

LOG_TABLE = "bronze.ingest_log"
LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("file_path", "String"), ("entity", "LowCardinality(String)"), ("file_date", "Nullable(Date)"),
    ("sha256", "String"), ("bytes", "UInt64"), ("rows", "UInt64"), ("status", "LowCardinality(String)"),
    ("reason", "LowCardinality(String)"), ("error", "String"), ("batch_id", "String"), ("version", "UInt32"),
    ("started_at", "DateTime64(3, 'UTC')"), ("finished_at", "DateTime64(3, 'UTC')"),
)
# Every bronze row keeps the number of the INSERT that wrote it (`_block_number`), so the key tests
# of bronze read only the batches written since they last passed (macros/tests/scoped_tests.sql).
BLOCK_NUMBERS = "enable_block_number_column"
_CHUNK = 8 << 20
_ENDING = 4096  # bytes kept of a file's end: blank lines beyond count as records (the file lands alone)
# A space beside what ends or starts a field (Inspection.padded).
_PADDED_EDGES = (b" ,", b", ", b" \n", b"\n ", b" \r", b"\r ", b'" ', b' "')
_GLOB_CHARS = frozenset("*?{}")

# The engine must keep every byte it is given: no trimming, no NULL guessing, no lenient column counts
# (but for an empty last field too many, which it drops whatever the settings: _comma_at_the_end).
# Not trimming costs: the engine reads the 10x order lines with a fifth more CPU with
# `input_format_csv_trim_whitespaces = 0`. So a group of files none of which has a space or tab at
# the edge of a field (Inspection.padded), where trimming cannot change a byte, lands with the
# engine's default, trimming on (`_ingest_settings`). Parallel parsing stays off: with it, chDB
# 26.9 numbers `_row_number` one too high from the second parsing segment of a file on
# (tests/test_load.py catches it); one parsing thread still lands millions of rows a second.
# Blank lines at the very end of a file are not records: skipped.
INGEST_SETTINGS = {
    "input_format_csv_trim_whitespaces": 0,
    "input_format_csv_empty_as_default": 1,
    "input_format_csv_allow_variable_number_of_columns": 0,
    "input_format_csv_skip_trailing_empty_lines": 1,
    "input_format_parallel_parsing": 0,
    "input_format_allow_errors_num": 0,
    "input_format_allow_errors_ratio": 0,
    "input_format_with_names_use_header": 1,
    "input_format_skip_unknown_fields": 0,
    "format_csv_allow_single_quotes": 0,
    "format_csv_null_representation": "\x00ecom-no-null\x00",
}


class Rejected(Exception):
    """A file that cannot land; `reason` is a stable code, the message says what to do."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class LoadAborted(WarehouseUnavailable):
    """The warehouse failed (disk full, permissions, ...): not the file's fault, so the load stops
    instead of rejecting good files. Rows of files not in the ingest log yet are removed by the next load."""


# Engine errors that say the warehouse, not the file, is at fault (ClickHouse error codes).
_WAREHOUSE_ERROR_CODES = frozenset({
    75,  # CANNOT_WRITE_TO_FILE_DESCRIPTOR
    159,  # TIMEOUT_EXCEEDED
    172,  # CANNOT_CREATE_DIRECTORY
    201,  # QUOTA_EXCEEDED
    204,  # CANNOT_FSYNC
    236,  # ABORTED
    241,  # MEMORY_LIMIT_EXCEEDED
    243,  # NOT_ENOUGH_SPACE
    252,  # TOO_MANY_PARTS
    275,  # AIO_WRITE_ERROR
    294,  # CANNOT_WRITE_TO_FILE
    394,  # QUERY_WAS_CANCELLED
    425,  # SYSTEM_ERROR
    458,  # CANNOT_UNLINK
    521,  # ATOMIC_RENAME_FAIL
    586,  # CANNOT_CREATE_FILE
})
# Errors in a file's bytes (the engine's parse errors). Their message quotes the row, so the
# warehouse's words below may be the file's text: these codes are always the file's fault.
_FILE_ERROR_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    25,  # CANNOT_PARSE_ESCAPE_SEQUENCE
    26,  # CANNOT_PARSE_QUOTED_STRING
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  # CANNOT_READ_ALL_DATA
    117,  # INCORRECT_DATA
})
_WAREHOUSE_ERROR_TEXT = re.compile(
    r"no space left|not enough space|cannot reserve|read-only file system|permission denied|"
    r"memory limit|disk quota", re.IGNORECASE)
# Seconds to wait for a DELETE of bronze rows to be applied. On a full disk the engine retries
# the mutation forever; the load stops with a message instead of hanging.
DELETE_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class RawFile:
    path: Path  # absolute
    relative: str  # to the raw directory, as logged
    entity: str | None
    file_date: date | None


@dataclass
class FileOutcome:
    file: RawFile
    status: str  # landed | rejected | skipped
    rows: int = 0
    reason: str = ""
    detail: str = ""


@dataclass
class LoadResult:
    outcomes: list[FileOutcome] = field(default_factory=list)
    orphan_rows_removed: int = 0
    # rejected earlier, gone from the raw directory since or replaced by the version landed last
    removed: list[str] = field(default_factory=list)

    def _with(self, status: str) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def landed(self) -> list[FileOutcome]:
        return self._with("landed")

    @property
    def rejected(self) -> list[FileOutcome]:
        return self._with("rejected")

    @property
    def skipped(self) -> list[FileOutcome]:
        return self._with("skipped")

    @property
    def rows(self) -> int:
        return sum(o.rows for o in self.landed)

    @property
    def exit_code(self) -> int:
        return 3 if self.rejected else 0


def bronze_ddl(cluster: str | None = None) -> list[str]:
    """CREATE statements for the bronze database, its tables and the ingest log.

    On a cluster each table is a ReplicatedMergeTree `<name>_local` on every node behind a
    Distributed table of the plain name, so readers never need to know.
    """
    quoted = _identifier(cluster) if cluster else ""
    on_cluster = f" ON CLUSTER {quoted}" if cluster else ""
    statements = [f"CREATE DATABASE IF NOT EXISTS bronze{on_cluster}"]

    def table(name: str, columns: str, order_by: str, partition_by: str | None, shard_by: str) -> None:
        partition = f" PARTITION BY {partition_by}" if partition_by else ""
        if not cluster:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS bronze.{name} ({columns}) "
                f"ENGINE = MergeTree{partition} ORDER BY {order_by} SETTINGS {BLOCK_NUMBERS} = 1"
            )
            return
        statements.append(
            f"CREATE TABLE IF NOT EXISTS bronze.{name}_local{on_cluster} ({columns}) ENGINE = "
            f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/bronze/{name}', '{{replica}}')"
            f"{partition} ORDER BY {order_by}"
        )
        statements.append(
            f"CREATE TABLE IF NOT EXISTS bronze.{name}{on_cluster} AS bronze.{name}_local "
            f"ENGINE = Distributed({quoted}, bronze, {name}_local, {shard_by})"
        )

    lineage = ", ".join(f"`{name}` {ch_type}" for name, ch_type in LINEAGE)
    # Silver reads "landed since the last run" (`_ingested_at > watermark`): the minmax index lets
    # that filter skip the granules of earlier landings instead of reading the column whole.
    # (CREATE ... AS leaves it out of the Distributed table of a cluster.)
    index = "INDEX ingested_at_minmax _ingested_at TYPE minmax GRANULARITY 1"
    for entity, columns in COLUMNS.items():
        source = ", ".join(f"`{column}` String" for column in columns)
        table(entity, f"{source}, {lineage}, {index}", "(_file_date, _batch_id, _row_number)",
              "toYear(_file_date)", "cityHash64(_batch_id)")
    table(
        "ingest_log",
        ", ".join(f"{column} {column_type}" for column, column_type in LOG_COLUMNS),
        "(file_path, finished_at)",
        None,
        "cityHash64(file_path)",
    )
    return statements


def _identifier(name: str) -> str:
    """A name from the environment (the cluster) as a quoted identifier: backslash and backquote
    escaped, so no value can end the identifier early."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def ensure_bronze(client: Client, cluster: str | None = None) -> None:
    for statement in bronze_ddl(cluster):
        client.command(statement)
    if not cluster:  # a table made before the setting: rows written from now on keep their number
        for (table,) in client.query(
                "SELECT name FROM system.tables WHERE database = 'bronze' AND engine = 'MergeTree' "
                f"AND create_table_query NOT LIKE '%{BLOCK_NUMBERS} = 1%'").result_rows:
            client.command(f"ALTER TABLE bronze.{_identifier(table)} MODIFY SETTING {BLOCK_NUMBERS} = 1")


def _printable(text: str) -> str:
    """A path as text that can be logged: bytes that are not UTF-8 (kept by Python as surrogates)
    become `\\xNN`."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def discover(raw_dir: Path, start: date | None = None, end: date | None = None) -> list[RawFile]:
    """Every `*.csv` under an entity folder of `raw_dir`, oldest day first; with `start` or `end`,
    only those of that range, and the date folders (`YYYY/MM/DD`) of other days are not searched.

    Files whose name breaks the contract are returned too (entity or date None) so they are
    rejected and logged rather than ignored: a compressed export (`*.csv.gz` and the like) in an
    entity folder, a `*.csv` at the top of `raw_dir` or in any other folder, and the entries whose
    files cannot be seen: directories that cannot be read, symbolic links to directories (not
    followed) and directories named like a CSV file, and an export's name with another ending
    than `.csv` (`.txt`, `.tsv`, none). Other names in the entity folders (an export still
    written under a temporary name: `*.csv.partial`, `*.tmp`) and, outside them, names starting with `.` or `_` (the
    generator's `_manifest`) are not searched.
    """
    raw_dir = raw_dir.resolve()
    found: list[RawFile] = []

    def hidden(path: Path) -> None:  # entity and date None: orchestration sees no day in them
        found.append(RawFile(path, _printable(path.relative_to(raw_dir).as_posix()), None, None))

    def unreadable(error: OSError) -> None:
        hidden(Path(error.filename))

    for entity in COLUMNS:
        root = raw_dir / entity
        try:
            if not root.is_dir():
                continue
        except OSError:  # the raw directory itself cannot be searched
            hidden(root)
            continue
        for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
            for dirname in dirnames:
                path = Path(dirpath, dirname)
                if path.is_symlink() or dirname.lower().endswith(".csv"):
                    hidden(path)
            if start or end:  # date folders of other days hold no file of this range: not searched
                below = Path(dirpath).relative_to(root).parts
                dirnames[:] = [d for d in dirnames if not _other_days((*below, d), start, end)]
            for filename in filenames:
                path = Path(dirpath, filename)
                if not filename.lower().endswith(".csv"):
                    # A compressed export is one the engine cannot read as it is, and an export's
                    # name with another ending one saved under a wrong name; other names (an
                    # export still written under a temporary name) are not exports yet.
                    if filename.lower().endswith(COMPRESSED) or _wrong_ending(filename):
                        hidden(path)
                    continue
                relative = path.relative_to(raw_dir)
                parsed = parse_name(relative)
                file_entity, file_date = parsed if parsed else (None, None)
                if file_date and ((start and file_date < start) or (end and file_date > end)):
                    continue
                found.append(RawFile(path, _printable(relative.as_posix()), file_entity, file_date))
    # Exports in the wrong place break the naming contract: a CSV at the top of the raw directory,
    # or in any other folder (an entity folder spelt otherwise, days without their entity
    # folder). They are reported and logged as bad_name rather than passed over; keep archives
    # outside the raw directory, or in a folder whose name starts with `_`.
    try:
        entries = sorted(raw_dir.iterdir())
    except OSError:  # reported above, through the entity folders
        entries = []
    for entry in entries:
        if entry.name in COLUMNS or entry.name.startswith((".", "_")):
            continue
        if entry.name.lower().endswith(".csv"):
            hidden(entry)
        elif entry.is_dir() and not entry.is_symlink() and not (
                entry.name.lower() in COLUMNS  # on a case-insensitive disk it is the entity's folder
                and _same_folder(entry, raw_dir / entry.name.lower())):
            # Only the CSVs found there count: a folder that cannot be read (`lost+found`) is not an export's.
            for dirpath, dirnames, filenames in os.walk(entry):
                dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
                for filename in filenames:
                    if filename.lower().endswith(".csv") and not filename.startswith((".", "_")):
                        hidden(Path(dirpath, filename))
    return sorted(found, key=lambda f: (f.file_date or date.min, ENTITY_ORDER.get(f.entity, 99), _in_order(f.relative)))


def _in_order(relative: str) -> list[str | int]:
    """A path's sort key with its numbers read as numbers: `_part2` lands before `_part10`. Landing
    order is ingestion order, which silver's latest version falls back on when `updated_at` ties."""
    return [int(piece) if i % 2 else piece for i, piece in enumerate(re.split(r"(\d+)", relative))]


def raw_dir_problem(raw_dir: Path) -> str | None:
    """Why `raw_dir` seems to be the folder above the raw exports or one entity's folder, or None:
    it has no entity folder, while a folder of it has, or it has year folders. Loaded as it is,
    every export would be rejected as misnamed and logged so."""
    try:
        if any((raw_dir / entity).is_dir() for entity in COLUMNS):
            return None
        # The exports' layout is <entity>/YYYY/MM/DD: the raw directory may be one of those folders.
        years = sorted(entry.name for entry in raw_dir.iterdir() if entry.is_dir() and len(entry.name) == 4
                       and entry.name.isascii() and entry.name.isdigit())
        resolved = raw_dir.resolve()
        for entity_folder in (resolved, *resolved.parents)[:4]:
            dated = resolved.parts[len(entity_folder.parts):]
            if (entity_folder.name in COLUMNS and (dated or years)  # an empty folder named orders is not one
                    and all(part.isascii() and part.isdigit() for part in dated)):
                return (f"raw directory {raw_dir} is {'inside ' if dated else ''}{entity_folder}, one entity's "
                        f"folder: point ECOM_RAW_DIR (or --raw-dir) at {entity_folder.parent}, which holds the "
                        "entity folders")
        if years:
            return (f"raw directory {raw_dir} has year folders ({', '.join(years[:3])}"
                    f"{', ...' if len(years) > 3 else ''}) but no entity folder ({', '.join(COLUMNS)}): the exports "
                    "go in <entity>/YYYY/MM/DD/ below it")
        below = sorted(entry for entry in raw_dir.iterdir() if entry.is_dir() and not entry.is_symlink()
                       and not entry.name.startswith((".", "_"))  # kept aside, as discover() does
                       and any((entry / entity).is_dir() for entity in COLUMNS))
    except OSError:  # reported by the load itself
        return None
    if not below:
        return None
    return (f"raw directory {raw_dir} has no entity folder ({', '.join(COLUMNS)}), but "
            f"{' and '.join(str(folder) for folder in below[:2])}{' and others' if len(below) > 2 else ''} "
            f"{'has' if len(below) == 1 else 'have'}: point ECOM_RAW_DIR (or --raw-dir) at the folder of the exports")


ENTITY_ORDER = {entity: i for i, entity in enumerate(COLUMNS)}
COMPRESSED = tuple(f".csv.{suffix}" for suffix in ("gz", "zip", "bz2", "xz", "zst"))
# `<entity>_YYYYMMDD[_partN]` and one ending, or none; the endings of names still being written.
_EXPORT_NAME = re.compile(r"^[a-z_]+_\d{8}(?:_part\d+)?(?P<ending>\.[^.]*)?$", re.IGNORECASE)
_TEMPORARY = (".tmp", ".temp", ".part", ".partial", ".filepart", ".crdownload", ".download", ".swp")


def _wrong_ending(filename: str) -> str | None:
    """The name an export saved with another ending than `.csv` would have (`order_items_20260301.txt`
    or with none), or None for any other name and a temporary one."""
    match = _EXPORT_NAME.match(filename)
    if not match or (match["ending"] or "").lower() in (".csv", *_TEMPORARY):
        return None
    return filename[:len(filename) - len(match["ending"] or "")] + ".csv"


def file_sha256(path: Path) -> str:
    """The checksum the ingest log keeps for a file's bytes (hex sha256), read in 8 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def searched_by_load(relative: str, start: date, end: date) -> bool:
    """Whether a load of start..end searches the folder of `relative` (a path below the raw
    directory, as `discover` gives it): date folders of other days are not searched."""
    parts = PurePosixPath(relative).parts
    folders = parts[1:-1] if parts and parts[0] in COLUMNS else ()
    return not any(_other_days(folders[:depth], start, end) for depth in range(1, min(3, len(folders)) + 1))


def _other_days(folders: tuple[str, ...], start: date | None, end: date | None) -> bool:
    """Whether the folder `YYYY[/MM[/DD]]` below an entity folder holds only days outside
    start..end. Folders not named like a date (or deeper ones) are searched."""
    if not 1 <= len(folders) <= 3 or [len(f) for f in folders] != [4, 2, 2][:len(folders)] or not all(
            f.isascii() and f.isdigit() for f in folders):
        return False
    year, month, day = (int(f) for f in (*folders, "0", "0")[:3])
    try:
        first = date(year, month or 1, day or 1)
    except ValueError:
        return False
    if day:
        last = first
    elif month:
        last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    else:
        last = date(year, 12, 31)
    return bool((start and last < start) or (end and first > end))


class Inspection(NamedTuple):
    sha256: str
    size: int
    problem: Rejected | None  # why it cannot land, or None
    # The commas outside double quotes are not (columns - 1) per record (blank lines at the end
    # aside): a record has the wrong number of fields, or a line is blank. The engine decides; such
    # a file lands in an INSERT of its own, so that a group it fails does not land twice.
    ragged: bool = False
    # A space or tab next to a comma, a line end, a double quote or an end of the file, or a tab
    # anywhere: what the engine's trimming would drop. Without one, trimming changes nothing.
    padded: bool = True


def _cannot(reason: str, detail: str) -> Inspection:
    return Inspection("", 0, Rejected(reason, detail))


def inspect(raw: RawFile) -> Inspection:
    """What a raw file is (sha256, bytes, why it cannot land), in one streaming pass."""
    try:
        return _inspect(raw)
    except OSError as exc:  # even its type cannot be told (a folder above it cannot be searched)
        return _cannot("unreadable", f"cannot be read ({exc.strerror}); fix its permissions")


def _inspect(raw: RawFile) -> Inspection:
    if raw.path.is_symlink():
        what = "a directory" if raw.path.is_dir() else "a file" if raw.path.exists() else "nothing (its target is gone)"
        return _cannot("symlink", f"is a symbolic link to {what}, not followed; copy the real export into the "
                                  "raw directory")
    if raw.path.is_dir():
        try:
            os.scandir(raw.path).close()
        except OSError as exc:
            return _cannot("unreadable", f"is a directory that cannot be read ({exc.strerror}): the files in it "
                                         "cannot be landed; fix its permissions")
        return _cannot("unreadable", "is a directory, not a file; replace it with the exported file")
    if raw.entity is None or raw.file_date is None:
        if raw.path.name.lower().endswith(COMPRESSED):
            return _cannot("bad_name", "is compressed; decompress it beside itself as the .csv the name holds")
        if csv_name := _wrong_ending(raw.path.name):
            return _cannot("bad_name", f"is named like an export but does not end in .csv; if it is one, rename it to "
                                       f"{csv_name}")
        if (day := name_day(Path(raw.relative))) and not FIRST_DAY <= day <= LAST_DAY:
            return _cannot("bad_name", f"its day {day} is outside {FIRST_DAY}..{LAST_DAY}, the days ClickHouse's "
                                       "Date holds; check the folder and the name")
        if (digits := name_digits(Path(raw.relative))) and not name_day(Path(raw.relative)):
            return _cannot("bad_name", f"its day {digits} is not a day of the calendar; check the folder and the "
                                       "name")
        return _cannot("bad_name", _misplaced(Path(raw.relative)))
    if not raw.path.exists():
        return _cannot("unreadable", "disappeared before it could be read (moved or deleted while the load ran); "
                                     "it lands on a later load once it is back")
    if not raw.path.is_file():  # reading a named pipe would wait forever
        return _cannot("unreadable", "is not a regular file (a pipe, socket or device); replace it with the "
                                     "exported file")
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    size, head, problem = 0, "", None
    # Commas, record ends and carriage returns are counted outside double quotes (a quoted field
    # may hold any of them); `ending` keeps the last bytes outside quotes, for the blank lines at
    # the end, which the engine skips.
    in_quote, commas, records, lone_crs, before, ending = False, 0, 0, 0, b"", b""
    newlines, last, padded = 0, b"", False
    try:
        with open(raw.path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                if not padded and (b" " in chunk or b"\t" in chunk or last == b" "):
                    # The pair across the chunk boundary too; the file's start counts as a line's.
                    padded = (b"\t" in chunk or (last or b"\n") + chunk[:1] in _PADDED_EDGES
                              or any(edge in chunk for edge in _PADDED_EDGES))
                line_ends = chunk.count(b"\n")
                newlines += line_ends
                last = chunk[-1:]
                outside = chunk
                if in_quote or b'"' in chunk:
                    outside, in_quote = _outside_quotes(chunk, in_quote)
                    line_ends = outside.count(b"\n")
                commas += outside.count(b",")
                records += line_ends
                lone_crs += _lone_crs(outside, before)
                before = outside[-1:]
                ending = (ending + outside[-_ENDING:])[-_ENDING:]
                if problem is None:
                    try:
                        text = decoder.decode(chunk)
                        if len(head) < 65536 and "\n" not in head:
                            head += text[:65536]
                    except UnicodeDecodeError as exc:
                        # exc.object is what the decoder read, ending with this chunk: a BOM left out,
                        # the start of a character carried over from the last chunk put in.
                        at = size + len(chunk) - len(exc.object) + exc.start
                        line = newlines - chunk.count(b"\n") + exc.object.count(b"\n", 0, exc.start) + 1
                        problem = Rejected("not_utf8", f"byte {at} (line {line}) is not UTF-8; "
                                                       "re-export the file as UTF-8")
                size += len(chunk)
        if problem is None:
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        problem = Rejected("not_utf8", "the file ends inside a UTF-8 character; re-export it as UTF-8")
    except OSError as exc:
        return _cannot("unreadable", f"cannot be read ({exc.strerror}); fix its permissions")
    if problem is None and size == 0:
        problem = Rejected("empty", "is empty (0 bytes): not even a header row; re-export it")
    if problem is None:
        problem = _check_header(raw.entity, head)
    # A record per line end, and one more for a last line without its own; the blank lines at the
    # end are not records: counted as lines, they could balance a record's comma too many.
    blank_at_end = max(ending[len(ending.rstrip(b"\r\n")):].count(b"\n") - 1, 0)
    records += (before not in (b"", b"\n")) - blank_at_end
    ragged = commas != (len(COLUMNS[raw.entity]) - 1) * records
    if problem is None and lone_crs:
        problem = Rejected("parse_error", "has a carriage return (\\r) that no line feed follows, outside quotes (CR "
                                          "or CR CR LF line ends?): re-export the file with LF or CRLF line ends")
    if problem is None and ragged:
        problem = _comma_at_the_end(raw.path, len(COLUMNS[raw.entity]))
    return Inspection(digest.hexdigest(), size, problem, ragged, padded or last == b" ")


def _misplaced(relative: Path) -> str:
    """Why a `.csv` whose name or place breaks the layout cannot land, and what to do."""
    parts, layout = relative.parts, "<entity>/YYYY/MM/DD/<entity>_YYYYMMDD[_partN].csv"
    if parts[0] not in COLUMNS:
        where = "at the top of the raw directory" if len(parts) == 1 else f"in {parts[0]}/, not an entity folder"
        return f"is {where} ({', '.join(COLUMNS)}); move it to {layout}, or out of the raw directory"
    if named := export_name(relative.name):
        entity, ymd = named
        folder = f"{entity}/{ymd[:4]}/{ymd[4:6]}/{ymd[6:]}/"
        if entity != parts[0] and entity in COLUMNS:
            return f"is an export of {entity} in the {parts[0]} folder; move it to {folder}"
        if entity == parts[0] and (len(parts) != 5 or tuple(parts[1:4]) != (ymd[:4], ymd[4:6], ymd[6:])):
            return f"is in {'/'.join(parts[:-1])}/, not its name's day {ymd}; move it to {folder} or rename it"
    return f"name does not follow {layout}; rename it"


def _lone_crs(data: bytes, before: bytes) -> int:
    """The carriage returns of `data` that no line feed follows (CR or CR CR LF line ends); one
    ending `before`, the byte read just before `data`, is taken back when `data` starts with one."""
    if b"\r" not in data and before != b"\r":
        return 0
    return data.count(b"\r") - data.count(b"\r\n") - (before == b"\r" and data[:1] == b"\n")


def _outside_quotes(chunk: bytes, in_quote: bool) -> tuple[bytes, bool]:
    """The bytes of `chunk` outside double quotes, each quoted stretch (or its part in this chunk)
    as one `Q`, and whether the chunk ends inside quotes. A doubled quote inside a quoted field
    closes and opens it again: two `Q`s, no byte lost outside."""
    parts = chunk.split(b'"')
    if in_quote:
        parts.insert(0, b"")
    ends_quoted = len(parts) % 2 == 0
    return b"Q".join(parts[0::2]) + (b"Q" if ends_quoted else b""), ends_quoted


def _comma_at_the_end(path: Path, columns: int) -> Rejected | None:
    """The first record of a file whose commas do not add up that has one field more than its
    header, the last blank: the engine drops such a field at a record's end (whatever its
    settings), so the row landed with its other fields as if they were all there is (`5,12,50,`
    from `12,50`, a decimal comma). Any other wrong field count the engine rejects itself, naming
    the row. Read in chunks: of a record that runs on past a chunk, only its commas and its end
    are kept."""
    record, in_quote, commas, tail = 0, False, 0, b""
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            if in_quote or b'"' in chunk:
                chunk, in_quote = _outside_quotes(chunk, in_quote)
            *ended, rest = chunk.split(b"\n")
            for line in ended:
                record += 1
                end = (tail + line[-256:]).rstrip(b" \t\r")
                if commas + line.count(b",") == columns and end.endswith(b","):
                    return Rejected("parse_error", f"data row {record - 1} has {columns + 1} fields, one more than "
                                                   f"the header's {columns}, the last blank (a comma at its end, or a "
                                                   "decimal comma?); fix that row and export the file again")
                commas, tail = 0, b""
            commas += rest.count(b",")
            tail = (tail + rest[-256:])[-256:]
    if commas == columns and tail.rstrip(b" \t\r").endswith(b","):
        return Rejected("parse_error", f"data row {record} (the last) has {columns + 1} fields, one more than the "
                                       f"header's {columns}, the last blank; fix that row and export the file again")
    return None


def _check_header(entity: str, head: str) -> Rejected | None:
    # The first line of up to 64 KiB: cut at the first "\n" before splitlines, which would split it all.
    line = (head.partition("\n")[0].splitlines() or [""])[0] if head.strip() else ""
    header = next(csv.reader([line]), [])
    expected = COLUMNS[entity]
    if sorted(header) == sorted(expected):
        return None  # the engine maps columns by name, so their order may differ
    missing = [c for c in expected if c not in header]
    # A name with an invisible character (a second byte-order mark, a zero-width space) is shown
    # escaped, and one with a space at its edge quoted: printed as it is, it reads as one of the
    # names reported missing.
    extra = [(c if c.isprintable() and c == c.strip() else repr(c) if c.isprintable() else ascii(c)) if c.strip()
             else "an empty name (a comma at the end of the header?)" for c in header if c not in expected]
    repeated = sorted({c for c in header if c in expected and header.count(c) > 1})
    what = "; ".join(
        part
        for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"unexpected {', '.join(extra[:5])}" if extra else "",
            f"repeated {', '.join(repeated)}" if repeated else "",
            "the first line is empty" if not line.strip() else "",
        )
        if part
    )
    return Rejected("wrong_header", f"header does not match the {entity} contract ({what}); export it again with "
                                    f"the header {','.join(expected)} (in any order)")


def _structure(entity: str) -> str:
    return ", ".join(f"`{column}` String" for column in COLUMNS[entity])


def _settings_clause(settings: dict) -> str:
    """`SETTINGS a = 1, ...` for the project's own constant settings. Sent as part of the statement:
    the chDB backend of clickhouse-connect turns `settings=` into a lookup plus a SET before and
    after every statement."""
    def literal(value: object) -> str:
        if isinstance(value, str):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\x00", "\\0") + "'"
        return str(int(value))
    return "SETTINGS " + ", ".join(f"{name} = {literal(value)}" for name, value in settings.items())


@dataclass
class _Batch:
    """A file on its way into bronze: what its inspection found and the batch its rows get."""

    raw: RawFile
    sha256: str
    size: int
    state: tuple[int, int, int]  # inode, size, mtime before landing: a change means it was still written
    version: int
    ragged: bool = False  # lands in an INSERT of its own (Inspection.ragged)
    padded: bool = True  # its group lands without trimming (Inspection.padded)
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    rows: int = 0
    started: str = ""  # when its group's INSERT began: the ingest log's started_at

    def retry(self) -> _Batch:
        """The same file under a new batch id, to land again after its group failed."""
        return replace(self, batch_id=uuid.uuid4().hex, rows=0, started="")


def _insert_select(entity: str, source: str, file_index: str) -> str:
    """INSERT of `source` into bronze; `file_index` is the expression of the file's 1-based index
    in the bound arrays of lineage values."""
    columns = ", ".join(f"`{c}`" for c in COLUMNS[entity])
    lineage = ", ".join(f"`{name}`" for name, _ in LINEAGE)
    return (
        f"INSERT INTO bronze.`{entity}` ({columns}, {lineage}) "
        f"SELECT {columns}, {{relatives:Array(String)}}[{file_index}], {{row_number}}, "
        f"{{sha256s:Array(String)}}[{file_index}], toDate({{file_dates:Array(String)}}[{file_index}]), "
        f"{{batch_ids:Array(String)}}[{file_index}], "
        f"toDateTime64({{ingested_at:String}}, 3, 'UTC') + toIntervalMillisecond({file_index} - 1) "
        f"FROM {source}"
    )


@contextmanager
def _staged(batches: list[_Batch]) -> Iterator[Path | None]:
    """A fresh folder of links `f00001.csv`, ... to the batches' files, so one `file()` glob reads
    exactly them: `file()` expands `*`, `?` and `{a,b}` in paths, so a raw directory named like
    `exports{2026}` would otherwise match nothing, and a path that is not UTF-8 cannot be passed
    as a String parameter at all. None if the temporary folder's own path is not plain.

    Hard links where the file system allows them (the temporary folder on the raw files' file
    system, links to the user's own files): on ext4 a symbolic link to a long path takes about
    0.7 ms to make, a hard link 0.04 ms, and a year of files is linked while the engine waits."""
    with tempfile.TemporaryDirectory(prefix="ecom-load-") as tmp:
        if _GLOB_CHARS.intersection(tmp) or _printable(tmp) != tmp:
            yield None
            return
        hard = True
        for i, batch in enumerate(batches, start=1):
            link = Path(tmp, f"f{i:05d}.csv")
            if hard:
                try:
                    link.hardlink_to(batch.raw.path)
                    continue
                except OSError:  # another file system, or hard links to others' files not allowed
                    hard = False
            link.symlink_to(batch.raw.path)
        yield Path(tmp)


def _ingest_settings(batches: list[_Batch]) -> dict:
    """INGEST_SETTINGS, with the engine's trimming on where it cannot change a byte of the files."""
    return {**INGEST_SETTINGS, "input_format_csv_trim_whitespaces": int(not any(b.padded for b in batches))}


def _land_rows(client: Client, settings: Settings, entity: str, batches: list[_Batch], ingested_at: str) -> None:
    """Land the files of `batches` (one entity) into bronze. The file at index i gets
    `_ingested_at` = ingested_at + (i - 1) ms, so ingestion order is file order."""
    parameters = {
        "relatives": [b.raw.relative for b in batches],
        "sha256s": [b.sha256 for b in batches],
        "file_dates": [b.raw.file_date.isoformat() for b in batches],
        "batch_ids": [b.batch_id for b in batches],
        "ingested_at": ingested_at,
        "structure": _structure(entity),
    }
    if settings.embedded:
        # The engine reads the files itself, one parsing thread per file, several files at once;
        # `_row_number` is its 0-based record index within the file.
        with _staged(batches) as folder:
            if folder is None:
                raise LoadAborted(f"the temporary folder {tempfile.gettempdir()} has glob characters in its path; "
                                  "set TMPDIR to a plain path and run again")
            sql = _insert_select(entity, "file({glob:String}, 'CSVWithNames', {structure:String})",
                                 "toUInt32(substring(_file, 2, 5))")
            sql = sql.replace("{row_number}", "_row_number + 1")
            client.command(f"{sql} {_settings_clause(_ingest_settings(batches))}",
                           parameters={**parameters, "glob": f"{folder}/f*.csv"})
        return
    # A server cannot see this machine's files: stream them, one at a time. One thread keeps row order.
    sql = _insert_select(entity, "input({structure:String})", "{file_index:UInt32}")
    sql = sql.replace("{row_number}", "rowNumberInAllBlocks() + 1")
    for i, batch in enumerate(batches, start=1):
        client.command(
            f"{sql} FORMAT CSVWithNames",
            parameters={**parameters, "file_index": i},
            data=batch.raw.path.read_bytes(),
            settings={**_ingest_settings([batch]), "max_threads": 1},
        )


_LOG_ENTRY_TYPES = {
    "path": "String", "entity": "String", "file_date": "String", "sha256": "String", "bytes": "UInt64",
    "rows": "UInt64", "status": "String", "reason": "String", "error": "String", "batch_id": "String",
    "version": "UInt32", "started": "String"}
_LOG_ENTRY_FIELDS = tuple(_LOG_ENTRY_TYPES)
_LOG_ENTRY_STRUCTURE = ", ".join(f"{name} {kind}" for name, kind in _LOG_ENTRY_TYPES.items())


# clickhouse-connect sends a command's bound parameters in the request's URL, and a server
# refuses one longer than its `http_max_field_value_size` (128 KiB by default): on a server the
# ingest-log rows of a commit go in INSERTs of at most this many bytes each (about 230 bytes a
# file), under the limit even URL-encoded (quotes, slashes and brackets take three bytes each).
LOG_BYTES_PER_INSERT_ON_A_SERVER = 32 * 1024


def _log(client: Client, entries: list[dict], max_bytes: int | None = None) -> None:
    """One INSERT of ingest-log rows, so a group of files is logged at once (on a server, one per
    `max_bytes` of rows: each file is still logged whole or not at all). The rows travel as one
    bound string, a JSON array per row, read by the engine's `format()`: the client formats one
    value instead of one per file and column (a log of 520 files: 37 ms against 47 ms with the
    twelve columns bound as arrays)."""
    rows = [json.dumps([entry[name] for name in _LOG_ENTRY_FIELDS], ensure_ascii=False) for entry in entries]
    chunk: list[str] = []
    size = 0
    for row in rows:
        length = len(row.encode()) + 1
        if chunk and max_bytes is not None and size + length > max_bytes:
            _log_rows(client, chunk)
            chunk, size = [], 0
        chunk.append(row)
        size += length
    if chunk:
        _log_rows(client, chunk)


def _log_rows(client: Client, rows: list[str]) -> None:
    client.command(
        f"INSERT INTO {LOG_TABLE} (file_path, entity, file_date, sha256, bytes, rows, status, reason, error, "
        "batch_id, version, started_at, finished_at) "
        "SELECT path, entity, if(file_date = '', NULL, toDate(file_date)), sha256, bytes, rows, status, reason, "
        "error, batch_id, version, parseDateTime64BestEffort(started, 3, 'UTC'), now64(3, 'UTC') "
        f"FROM format(JSONCompactEachRow, '{_LOG_ENTRY_STRUCTURE}', {{entries:String}})",
        parameters={"entries": "\n".join(rows)},
    )


def _log_entry(raw: RawFile, *, sha256: str, size: int, rows: int, status: str, reason: str, error: str,
               batch_id: str, version: int, started: str) -> dict:
    return {"path": raw.relative, "entity": raw.entity or "",
            "file_date": raw.file_date.isoformat() if raw.file_date else "", "sha256": sha256, "bytes": size,
            "rows": rows, "status": status, "reason": reason, "error": error, "batch_id": batch_id,
            "version": version, "started": started}


def remove_orphan_batches(client: Client, cluster: str | None = None) -> int:
    """Delete rows of batches that never reached the ingest log (a load killed mid-file).

    Every landed file's row count in the ingest log was counted in bronze when it was logged, so
    an entity whose bronze table holds exactly the rows its log lists has no such rows: only the
    other entities are scanned batch by batch (a count from part metadata against a scan of every
    `_batch_id` of bronze)."""
    counts = " UNION ALL ".join(
        f"SELECT '{entity}' AS entity, count() AS rows FROM bronze.`{entity}`" for entity in COLUMNS)
    differing = client.query(
        f"SELECT b.entity FROM ({counts}) AS b LEFT JOIN (SELECT entity, sum(rows) AS rows FROM {LOG_TABLE} "
        "WHERE status = 'landed' GROUP BY entity) AS l ON b.entity = l.entity WHERE b.rows != ifNull(l.rows, 0)"
    ).result_rows
    removed = 0
    # The batches are found first and deleted by name: a mutation on a Replicated table (a
    # cluster's) takes no subquery, and a cluster reads the log through GLOBAL IN.
    not_in = "GLOBAL NOT IN" if cluster else "NOT IN"
    for (entity,) in differing:
        orphans = client.query(
            f"SELECT _batch_id, count() FROM bronze.`{entity}` WHERE _batch_id {not_in} (SELECT batch_id "
            f"FROM {LOG_TABLE} WHERE status = 'landed' AND entity = {{entity:String}}) GROUP BY _batch_id",
            parameters={"entity": entity}).result_rows
        if orphans:
            _delete_rows(client, entity, "_batch_id IN {batch_ids:Array(String)}",
                         {"batch_ids": [batch_id for batch_id, _ in orphans]}, cluster)
            removed += sum(rows for _, rows in orphans)
    return removed


def _delete_rows(client: Client, entity: str, where: str, parameters: dict, cluster: str | None = None) -> None:
    """A lightweight DELETE from bronze, waited for with a deadline.

    The engine applies a DELETE as a mutation and, on a full disk, retries it forever; waiting
    for it synchronously would hang the load. It is issued asynchronously and polled instead.
    On a cluster the rows are in the `<entity>_local` tables of every node (a Distributed table
    takes no DELETE), and so are the mutations.
    """
    table = f"{entity}_local" if cluster else entity
    on_cluster = f" ON CLUSTER {_identifier(cluster)}" if cluster else ""
    mutations = f"clusterAllReplicas({_identifier(cluster)}, system.mutations)" if cluster else "system.mutations"
    client.command(f"DELETE FROM bronze.`{table}`{on_cluster} WHERE {where}", parameters=parameters,
                   settings={"lightweight_deletes_sync": 0})
    started = time.monotonic()
    pause = 0.01
    while True:
        pending, failure = client.query(
            f"SELECT count(), anyIf(latest_fail_reason, latest_fail_reason != '') FROM {mutations} "
            "WHERE database = 'bronze' AND table = {table:String} AND NOT is_done",
            parameters={"table": table},
        ).result_rows[0]
        if not pending:
            return
        waited = time.monotonic() - started
        full = waited > 1 and _disk_nearly_full(client)
        if failure or full or waited > DELETE_TIMEOUT_SECONDS:
            why = (_engine_message(Exception(failure)) if failure else
                   "no space left on the warehouse disk" if full else
                   f"not applied after {DELETE_TIMEOUT_SECONDS:.0f} s")
            raise DatabaseError(f"deleting rows of an unfinished load from bronze.{entity} failed: {why}")
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _disk_nearly_full(client: Client) -> bool:
    """Less than the 1 MiB the engine reserves before writing a part is left."""
    free = client.command("SELECT min(unreserved_space) FROM system.disks WHERE NOT is_remote")
    return int(free or 0) < (1 << 20)


@dataclass
class _Ledger:
    """What the ingest log says about earlier files, kept current while a load runs."""

    latest: dict[str, str] = field(default_factory=dict)  # path -> sha256 of its latest landed version
    first_landing: dict[str, tuple[str, int]] = field(default_factory=dict)  # sha256 -> (path, rows)
    # path -> (status, sha256) of its latest entry: the bytes a rejection is about, while it counts
    entries: dict[str, tuple[str, str]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)  # path -> versions landed

    @classmethod
    def read(cls, client: Client) -> _Ledger:
        ledger = cls()
        for path, sha, status, rows in client.query(
            f"SELECT file_path, sha256, status, rows FROM {LOG_TABLE} "
            "WHERE status IN ('landed', 'rejected', 'removed') ORDER BY finished_at"
        ).result_rows:
            if status == "landed":
                ledger.note_landed(path, sha, rows)
            ledger.entries[path] = (status, sha)
        return ledger

    def rejected_now(self, path: str) -> str | None:
        """The sha256 of the bytes rejected at `path`, when its latest entry is that rejection."""
        status, sha256 = self.entries.get(path, ("", ""))
        return sha256 if status == "rejected" else None

    def note_landed(self, path: str, sha256: str, rows: int) -> None:
        self.entries[path] = ("landed", sha256)
        self.latest[path] = sha256
        self.first_landing.setdefault(sha256, (path, rows))
        self.versions[path] = self.versions.get(path, 0) + 1

    def landed_elsewhere(self, sha256: str, path: str) -> str | None:
        """The other path where the same bytes, with data rows, landed first (a copy is rejected, not
        landed twice). A file put back at its path as an earlier version landed there is not a copy.

        Header-only files of different days have the same bytes; each still lands (0 rows) so the
        log shows every day's export arrived.
        """
        first = self.first_landing.get(sha256)
        return first[0] if first and first[1] > 0 and first[0] != path else None


def load(
    settings: Settings,
    client: Client,
    start: date | None = None,
    end: date | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    files: Iterable[RawFile] | None = None,
) -> LoadResult:
    """Land every file of `settings.raw_dir` (within start..end) not landed yet.

    Files are checked in order (a thread reads ahead), then landed a group at a time: the files
    of one entity and year in one INSERT (bronze is partitioned by year), each file whose check
    says its records are ragged in one of its own. Every few hundred files, the landed ones are
    counted in one query and logged in one ingest-log INSERT, so each file is logged whole or not
    at all. A group whose INSERT fails is discarded and lands again without the file the engine
    could not parse, which is rejected alone.

    Raises LoadAborted when the warehouse itself fails (disk full, permissions): files already in
    the ingest log stay landed; rows of the others (landed since the last commit, or being landed)
    are removed by the next load, which lands those files again.
    """
    try:
        if settings.cluster:
            # Through Distributed tables an INSERT returns once its rows are on their shards, so
            # the row counts and the ingest log that follow see them.
            client.set_client_setting("distributed_foreground_insert", "1")
        ensure_bronze(client, settings.cluster)
        result = LoadResult(orphan_rows_removed=remove_orphan_batches(client, settings.cluster))
        ledger = _Ledger.read(client)
        latest = _latest_ingestion(client)
    except (DatabaseError, OperationalError) as exc:
        raise LoadAborted(f"cannot prepare bronze: {_warehouse_failure(exc, settings)}") from None
    loader = _Loader(client, settings, ledger, result, on_file, next_ingested=latest + timedelta(milliseconds=1))
    groups: dict[str, list[_Batch]] = {}  # entity -> files of the open year
    year: int | None = None
    later: list[RawFile] = []  # same bytes as a file not landed yet: decided once that one is
    files = list(discover(settings.raw_dir, start, end) if files is None else files)
    # A thread reads and checks the next files while the engine lands the current ones (the
    # engine lets Python run while it works); what each file's check means is decided here, in order.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ecom-inspect") as reader:
        try:
            for raw, examined in zip(files, reader.map(_examine, files), strict=True):
                if raw.file_date and raw.file_date.year != year:
                    loader.land_all(groups)
                    year = raw.file_date.year
                batch = loader.decide(raw, examined)
                if batch == "later":
                    later.append(raw)
                elif isinstance(batch, _Batch) and batch.ragged:  # after the files before it: files land in order
                    loader.insert(groups.pop(batch.raw.entity, []))
                    loader.insert([batch])
                elif isinstance(batch, _Batch):
                    group = groups.setdefault(batch.raw.entity, [])
                    group.append(batch)
                    if len(group) >= MAX_FILES_PER_INSERT:
                        loader.insert(groups.pop(batch.raw.entity))
                        loader.commit_if_due()
            loader.land_all(groups)
            loader.commit()
            for raw in later:
                batch = loader.decide(raw, _examine(raw))
                if isinstance(batch, _Batch):
                    loader.insert([batch])
                loader.commit()
            result.removed += loader.log_removed(start, end)
        except (DatabaseError, OperationalError) as exc:
            raise LoadAborted(f"landing stopped at {loader.landing}: {_warehouse_failure(exc, settings)}; files "
                              "already in the ingest log are kept, the others land again on the next load") from None
        finally:
            reader.shutdown(cancel_futures=True)
    return result


# Files per INSERT at most (a year of daily files). It bounds what a failing INSERT costs (its
# other files land again) and the lineage arrays bound to the statement, about 200 bytes a file:
# chDB passes them beside the statement (742 KB for 3,640 files did not need a larger
# `max_query_size`), a server receives them with each statement.
MAX_FILES_PER_INSERT = 400
# Files landed before their ingest-log rows are written, in one INSERT with their row counts read
# in one query: a few statements per few hundred files instead of per group. Rows of files not
# logged yet are invisible to silver, and removed by the next load if this one is killed.
COMMIT_FILES = 500


def _latest_ingestion(client: Client) -> datetime:
    """No earlier than the newest `_ingested_at` in bronze (1970 when empty). A load gives its files
    times 1 ms apart from the engine's clock, so a load of many small files runs ahead of the
    clock; the next load starts after it, or silver, which takes "newer than the newest
    `_ingested_at` it has" as new, would never read that load's rows. Read from the ingest log:
    every row in bronze belongs to a logged group, whose files got `started_at` plus at most
    MAX_FILES_PER_INSERT - 1 ms."""
    return datetime.fromisoformat(client.command(
        f"SELECT toString(max(started_at) + toIntervalMillisecond({MAX_FILES_PER_INSERT})) FROM {LOG_TABLE}"))


def _is_warehouse_error(exc: Exception) -> bool:
    found = re.search(r"Code: (\d+)", str(exc))
    code = int(found.group(1)) if found else None
    if code in _FILE_ERROR_CODES:
        return False
    return code in _WAREHOUSE_ERROR_CODES or bool(_WAREHOUSE_ERROR_TEXT.search(str(exc)))


def _warehouse_failure(exc: Exception, settings: Settings) -> str:
    """One sentence: which warehouse failed, the engine's reason, and what to do."""
    reason = _engine_message(exc)
    if re.search(r"space|reserve|quota", reason, re.IGNORECASE):
        remedy = "free space on its disk"
    elif re.search(r"permission|read-only", reason, re.IGNORECASE):
        remedy = "make it writable"
    else:
        remedy = "fix the problem above"
    return f"{settings.describe()} failed ({reason}); {remedy} and run again"


def _top_folder(raw_dir: Path, relative: str) -> Path:
    """The entity (or other) folder a logged path starts with; the raw directory for a file at its top."""
    parts = Path(relative).parts
    return raw_dir / parts[0] if len(parts) > 1 else raw_dir


class Rejection(NamedTuple):
    path: str
    entity: str  # '' for a file whose name gives no entity
    file_date: date | None
    reason: str
    error: str
    sha256: str  # '' for a file rejected before its bytes were read


def latest_rejections(client: Client) -> list[Rejection]:
    """The files whose latest ingest-log entry is a rejection: not landed or logged removed since."""
    return [Rejection(*row) for row in client.query(
        "SELECT file_path, latest.1, latest.2, latest.3, latest.4, latest.5 FROM (SELECT file_path, "
        f"argMax((entity, file_date, reason, error, sha256, status), finished_at) AS latest FROM {LOG_TABLE} "
        f"WHERE file_path IN (SELECT file_path FROM {LOG_TABLE} WHERE status = 'rejected') GROUP BY file_path) "
        "WHERE latest.6 = 'rejected' ORDER BY file_path"
    ).result_rows]


def plain_folder(path: Path) -> bool:
    """A folder that can be read, not a link to one: what the listing searches, and never reports."""
    try:
        return path.is_dir() and not path.is_symlink() and os.access(path, os.R_OK | os.X_OK)
    except OSError:
        return False


def _gone(path: Path) -> bool:
    """No entry at `path` (a folder that cannot be read says nothing: not gone)."""
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def _file_state(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class _Loader:
    """One load's steps: decide what a checked file is (reject or skip it, or make it a batch),
    land groups of batches, log them, and report every file's outcome once."""

    def __init__(self, client: Client, settings: Settings, ledger: _Ledger, result: LoadResult,
                 on_file: Callable[[FileOutcome], None] | None, next_ingested: datetime):
        self.client, self.settings, self.ledger, self.result, self.on_file = client, settings, ledger, result, on_file
        self.landing = ""  # what is being landed, for the message when the warehouse fails
        self.next_ingested = next_ingested  # no file of this load lands before it
        self.clock: datetime | None = None  # the engine's clock, read once per commit
        self.uncommitted: list[_Batch] = []  # in bronze, not in the ingest log yet
        self.rejected: list[dict] = []  # ingest-log rows of files rejected (or no longer) since the last commit
        self.unlogged: set[str] = set()  # sha256 of the batches made and neither logged nor rejected yet

    def report(self, outcome: FileOutcome) -> None:
        self.result.outcomes.append(outcome)
        if self.on_file:
            self.on_file(outcome)

    def decide(self, raw: RawFile, examined: _Examined) -> _Batch | str | None:
        """A batch to land, "later" (same bytes as a batch not logged yet), or None (outcome reported)."""
        state, (sha256, size, problem, ragged, padded) = examined
        if problem:
            self.reject(raw, problem, sha256, size, self.now())
            return None
        # Skipped when it is the version landed last at its path. A file put back as an earlier
        # version is a change like any other: it lands as the next version, whose rows win or lose
        # against the versions landed between by `updated_at`, as any key's do (a row of the
        # version it replaced with a later `updated_at` keeps winning).
        if self.ledger.latest.get(raw.relative) == sha256:
            if self.ledger.rejected_now(raw.relative) is not None:
                # Rejected bytes replaced by the version landed last: the rejection no longer counts.
                self.rejected.append(_log_entry(
                    raw, sha256=sha256, size=size, rows=0, status="removed", reason="file_removed",
                    error="rejected earlier; replaced since by the version landed last, whose rows bronze holds",
                    batch_id="", version=0, started=self.now()))
                self.ledger.entries[raw.relative] = ("removed", sha256)
                self.result.removed.append(raw.relative)
            self.report(FileOutcome(raw, "skipped", reason="already_landed", detail="already landed"))
            return None
        if first := self.ledger.landed_elsewhere(sha256, raw.relative):
            self.reject(raw, Rejected("duplicate_content", f"has the same bytes as {first}, landed already, so its "
                                      "rows are in bronze once; if this is another day's export, export it again"),
                        sha256, size, self.now())
            return None
        if sha256 in self.unlogged:
            return "later"
        self.unlogged.add(sha256)
        return _Batch(raw, sha256, size, state, self.ledger.versions.get(raw.relative, 0) + 1, ragged, padded)

    def now(self) -> str:
        return self.client.command("SELECT toString(now64(3, 'UTC'))")

    def land_all(self, groups: dict[str, list[_Batch]]) -> None:
        for entity in sorted(groups, key=lambda e: ENTITY_ORDER.get(e, 99)):
            self.insert(groups[entity])
        groups.clear()
        self.commit_if_due()

    def commit_if_due(self) -> None:
        if len(self.uncommitted) >= COMMIT_FILES:
            self.commit()

    def insert(self, batches: list[_Batch]) -> None:
        """One INSERT for the batches (one entity); they are logged by the next commit. A group
        whose INSERT fails is discarded; the file the engine names is rejected and the others
        land again together (each on its own when no file is named)."""
        if not batches:
            return
        entity = batches[0].raw.entity
        assert entity is not None
        self.landing = batches[0].raw.relative if len(batches) == 1 else (
            f"{len(batches)} {entity} files of {batches[0].raw.file_date:%Y-%m}")
        started = self.ingestion_start(len(batches))
        try:
            _land_rows(self.client, self.settings, entity, batches, started)
        except DatabaseError as exc:
            readable = all(os.access(b.raw.path, os.R_OK) for b in batches)
            if readable and _is_warehouse_error(exc):
                raise  # not the files' fault: load() stops, the next load removes the rows
            _discard(self.client, entity, batches, self.settings.cluster)
            named = _file_named_in(exc, batches)
            if len(batches) > 1 and named is None:  # find the broken file: each lands on its own
                for batch in batches:
                    self.insert([batch.retry()])
                return
            batch = named or batches[0]
            if not os.access(batch.raw.path, os.R_OK):
                problem = Rejected("unreadable", "became unreadable while it was being landed; fix its permissions")
            else:
                problem = Rejected("parse_error", f"cannot be parsed as CSV: {_parse_failure(exc, batch.raw)}; "
                                                  "fix that row and export the file again")
            self.reject(batch.raw, problem, batch.sha256, batch.size, started)
            self.unlogged.discard(batch.sha256)
            # The engine named the file it could not parse: the others land together again.
            self.insert([b.retry() for b in batches if b is not batch])
            return
        changed = [b for b in batches if not _unchanged(b)]
        if changed:
            _discard(self.client, entity, changed, self.settings.cluster)
            for batch in changed:
                self.unlogged.discard(batch.sha256)
                self.reject(batch.raw, Rejected(
                    "changed_while_loading", "changed while it was being landed (is it still being written?); "
                                             "it lands on a later load once it is complete"),
                    batch.sha256, batch.size, started)
        for batch in batches:
            if batch not in changed:
                batch.started = started
                self.uncommitted.append(batch)

    def commit(self) -> None:
        """The row counts of the landed batches in one query, then one ingest-log INSERT for them
        and for the files rejected since the last commit: from then on their rows count."""
        batches, self.uncommitted, self.clock = self.uncommitted, [], None
        rejected, self.rejected = self.rejected, []
        counts = _row_counts(self.client, batches) if batches else {}
        for batch in batches:
            batch.rows = counts.get(batch.batch_id, 0)
        entries = [_log_entry(b.raw, sha256=b.sha256, size=b.size, rows=b.rows, status="landed", reason="", error="",
                              batch_id=b.batch_id, version=b.version, started=b.started) for b in batches]
        if entries or rejected:
            self.log(entries + rejected)
        for batch in batches:
            self.unlogged.discard(batch.sha256)
            self.ledger.note_landed(batch.raw.relative, batch.sha256, batch.rows)
            detail = f"version {batch.version} of this path" if batch.version > 1 else ""
            self.report(FileOutcome(batch.raw, "landed", rows=batch.rows, detail=detail))

    def log(self, entries: list[dict]) -> None:
        _log(self.client, entries, None if self.settings.embedded else LOG_BYTES_PER_INSERT_ON_A_SERVER)

    def ingestion_start(self, files: int) -> str:
        """The engine's now, or 1 ms after the last file of the previous group (or of earlier loads)
        if that is later: files get strictly increasing `_ingested_at` in the order they land. The
        clock is read once per commit; until the next, groups follow on from the last one."""
        if self.clock is None:
            self.clock = datetime.fromisoformat(self.now())
        start = max(self.clock, self.next_ingested)
        self.next_ingested = start + timedelta(milliseconds=files)
        return start.isoformat(sep=" ", timespec="milliseconds")

    def log_removed(self, start: date | None, end: date | None) -> list[str]:
        """Log as `removed` each file whose latest ingest-log entry is a rejection and which this
        load's listing of the raw directory no longer finds: deleting a stray or broken export is
        how a user is done with it, and `gold.mart_data_quality` counts a file while its latest
        entry is a rejection. The rejection itself stays in the log.

        Only where the listing looked: the files of start..end, and files whose name gives no
        day on a load of every day (a dated load lists only its days' folders). A file whose
        entity folder (or raw directory) is not there is not taken as removed: the raw directory
        may be pointed elsewhere, or not mounted."""
        everything = start is None and end is None
        candidates = [
            RawFile(self.settings.raw_dir / r.path, r.path, r.entity or None, r.file_date)
            for r in latest_rejections(self.client)
            if (everything if r.file_date is None
                else (start is None or r.file_date >= start) and (end is None or r.file_date <= end))
        ]
        if not candidates:
            return []
        # Listed again, whatever files this load was given: a path that is not UTF-8 is logged
        # escaped, and only the listing spells it the same way.
        # A folder rejected as one (it could not be read, or was a symbolic link) that the listing
        # no longer reports is a plain folder now, whose files are listed on their own.
        present = {raw.relative for raw in discover(self.settings.raw_dir, start, end)}
        gone = [raw for raw in candidates if raw.relative not in present
                and (_gone(raw.path) or plain_folder(raw.path))
                and _top_folder(self.settings.raw_dir, raw.relative).is_dir()]
        if gone:
            started = self.now()
            self.log([_log_entry(
                raw, sha256="", size=0, rows=0, status="removed", reason="file_removed",
                error="rejected earlier; " + ("now a folder whose files are listed on their own"
                                              if plain_folder(raw.path) else "no longer in the raw directory"),
                batch_id="", version=0, started=started) for raw in gone])
        return [raw.relative for raw in gone]

    def reject(self, raw: RawFile, problem: Rejected, sha256: str, size: int, started: str) -> None:
        if self.ledger.rejected_now(raw.relative) == sha256:
            self.report(FileOutcome(raw, "skipped", reason=problem.reason, detail=f"rejected earlier: {problem}"))
            return
        self.rejected.append(_log_entry(raw, sha256=sha256, size=size, rows=0, status="rejected",
                                        reason=problem.reason, error=str(problem), batch_id="", version=0,
                                        started=started))
        self.ledger.entries[raw.relative] = ("rejected", sha256)
        self.report(FileOutcome(raw, "rejected", reason=problem.reason, detail=str(problem)))


_Examined = tuple[tuple[int, int, int], Inspection]


def _examine(raw: RawFile) -> _Examined:
    """The file's state (a change after this means it was still being written), then its check."""
    try:
        state = _file_state(raw.path)
    except OSError:
        state = (0, 0, 0)  # inspect() says why
    return state, inspect(raw)


def _row_counts(client: Client, batches: list[_Batch]) -> dict[str, int]:
    """Rows in bronze of each batch, in one query over the entities' days (the primary key serves)."""
    by_entity: dict[str, list[_Batch]] = {}
    for batch in batches:
        by_entity.setdefault(batch.raw.entity, []).append(batch)
    selects, parameters = [], {}
    for i, (entity, group) in enumerate(by_entity.items()):
        selects.append(f"SELECT _batch_id, count() FROM bronze.`{entity}` WHERE _file_date BETWEEN {{first{i}:Date}} "
                       f"AND {{last{i}:Date}} AND _batch_id IN {{batch_ids{i}:Array(String)}} GROUP BY _batch_id")
        parameters |= {f"first{i}": min(b.raw.file_date for b in group),
                       f"last{i}": max(b.raw.file_date for b in group), f"batch_ids{i}": [b.batch_id for b in group]}
    rows = client.query(" UNION ALL ".join(selects), parameters=parameters).result_rows
    return {str(batch_id): int(count) for batch_id, count in rows}


def _unchanged(batch: _Batch) -> bool:
    try:
        return _file_state(batch.raw.path) == batch.state
    except OSError:
        return False


def _discard(client: Client, entity: str, batches: list[_Batch], cluster: str | None = None) -> None:
    """Remove the rows of batches that will not be logged, within their days' partitions (an
    INSERT that failed often wrote nothing: then there is nothing to delete)."""
    where = "_file_date BETWEEN {first:Date} AND {last:Date} AND _batch_id IN {batch_ids:Array(String)}"
    parameters = {"first": min(b.raw.file_date for b in batches), "last": max(b.raw.file_date for b in batches),
                  "batch_ids": [b.batch_id for b in batches]}
    if int(client.command(f"SELECT count() FROM bronze.`{entity}` WHERE {where}", parameters=parameters)):
        _delete_rows(client, entity, where, parameters, cluster)


_STAGED_FILE = re.compile(r"\(in file/uri [^)]*/f(\d{5})\.csv\)")


def _file_named_in(exc: Exception, batches: list[_Batch]) -> _Batch | None:
    """The batch whose staged file the engine's error names (`(in file/uri .../f00012.csv)`)."""
    match = _STAGED_FILE.search(str(exc))
    index = int(match.group(1)) if match else 0
    return batches[index - 1] if 0 < index <= len(batches) else None


_NESTED_CODE = re.compile(r"Code: \d+\. (?:DB::)?Exception: ")


def _engine_message(exc: Exception) -> str:
    """The engine's own sentence, without stack trace or version trailer."""
    text = " ".join(str(exc).split())
    for marker in ("DB::Exception: ", "Exception: "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    while nested := _NESTED_CODE.match(text):  # an error the engine passed on inside its own
        text = text[nested.end():]
    for cut in (" (version ", ". Stack trace", " Stack trace"):
        text = text.split(cut, 1)[0]
    if len(text) <= 300:
        return text
    return text[:300].rsplit(" ", 1)[0].rstrip(",;:") + " ..."  # a long list of what was expected


def _parse_failure(exc: Exception, raw: RawFile) -> str:
    """The engine's parse error in one line: its first sentence with the row (`(at row N)`, N
    counting data rows from 1) and its explanation (`ERROR: ...`), without the columns it dumps."""
    text = _STAGED_FILE.sub(f"(in {raw.relative})", str(exc)).replace("(at row ", "(at data row ")
    explained = re.search(r"\nERROR: (.*?)(?:\n\n|\n: |$)", text, re.DOTALL)
    if not explained:  # the engine's sentence up to its pipeline trace
        first = re.split(r" ?: While executing ", _engine_message(Exception(text)))[0].rstrip(". ")
        # At the end of the file the engine can no longer show the row it read; a field still open
        # there is most often a quote that never closes.
        first = first.replace(" : Buffer has gone, cannot extract information about what has been parsed", "")
        if "at end of stream" in first and _quotes_left_open(raw.path):
            first += "; the file ends inside a field: look for a quote that never closes"
        return first
    first = _engine_message(Exception(text.split("\n", 1)[0])).rstrip(": ")
    return f"{first}: {' '.join(explained.group(1).split()).rstrip('. ')}"


def _quotes_left_open(path: Path) -> bool:
    """Whether the file has an odd number of double quotes (read again only when a parse failed):
    a quoted field that never closes runs to the end of the file."""
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b'"') for chunk in iter(lambda: handle.read(_CHUNK), b"")) % 2 == 1
    except OSError:
        return False


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def print_summary(result: LoadResult, out: TextIO | None = None, looked_in: str = "") -> None:
    """What a load did, for people: counts first, then why nothing landed when nothing did
    (`looked_in`: where and for which days the files were looked for)."""
    out = out or sys.stdout
    landed, rejected, skipped = result.landed, result.rejected, result.skipped
    rows = "row" if result.rows == 1 else "rows"
    print(f"landed {_files(len(landed))}, {result.rows:,} {rows}; rejected {len(rejected)}; skipped {len(skipped)}",
          file=out)
    if result.orphan_rows_removed:
        print(f"removed {result.orphan_rows_removed:,} rows of an interrupted earlier load", file=out)
    already = [o for o in skipped if o.reason == "already_landed"]
    earlier = [o for o in skipped if o.reason != "already_landed"]
    if not landed and not rejected and all(o.file.file_date is None for o in skipped):
        # A day whose exports have not arrived is worth a look: said on stderr, beside the counts,
        # also when files rejected before whose names give no day (read by every load) are all there is.
        but = f", only {_files(len(earlier))} rejected before whose names give no day" if earlier else ""
        print(f"warning: nothing to land: no raw files found{' ' + looked_in if looked_in else ''}{but} (check "
              "ECOM_RAW_DIR and the days asked for)", file=sys.stderr)
    elif not landed and not rejected:
        print("nothing new to land" + (f": {_files(len(already))} already landed (same sha256 in bronze.ingest_log)"
                                       if already else ""), file=out)
    if earlier:
        print(f"{_files(len(earlier))} {'stays' if len(earlier) == 1 else 'stay'} rejected from earlier loads "
              "(see bronze.ingest_log)", file=out)
    if result.removed:
        print(f"{_files(len(result.removed))} rejected earlier and since removed from the raw directory, or "
              "replaced by the version landed last: logged as removed, no longer counted as rejected", file=out)
