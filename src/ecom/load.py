"""Land raw CSV exports into bronze, exactly once (SPEC section 5).

Every source column lands as `String` so no value can fail to land, next to lineage columns
(file, row number, checksum, partition date, batch, ingestion time). Each file is checked
first (name, readable, UTF-8, header) in one streaming pass that also takes its sha256;
then the engine parses it itself: `INSERT ... SELECT FROM file()` on the embedded target,
`INSERT ... SELECT FROM input()` with the file streamed by the client on a server.

The ingest log (`bronze.ingest_log`) is the ledger: a file's rows count only once its
`landed` row is written, and rows of a batch without one (a crash mid-file) are removed
before the next load, so a file is either complete or absent.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TextIO

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from ecom.config import Settings
from ecom.contract import COLUMNS, LINEAGE, parse_name

LOG_TABLE = "bronze.ingest_log"
_CHUNK = 8 << 20
_GLOB_CHARS = frozenset("*?{}")

# The engine must keep every byte it is given: no trimming, no NULL guessing, no lenient column counts.
# Parallel parsing stays off: with it, chDB 26.9 numbers `_row_number` one too high from the second
# parsing segment of a file on (tests/test_load.py catches it); one parsing thread still lands
# millions of rows a second. Blank lines at the very end of a file are not records: skipped.
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
    on_cluster = f" ON CLUSTER `{cluster}`" if cluster else ""
    statements = [f"CREATE DATABASE IF NOT EXISTS bronze{on_cluster}"]

    def table(name: str, columns: str, order_by: str, partition_by: str | None) -> None:
        partition = f" PARTITION BY {partition_by}" if partition_by else ""
        if not cluster:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS bronze.{name} ({columns}) "
                f"ENGINE = MergeTree{partition} ORDER BY {order_by}"
            )
            return
        statements.append(
            f"CREATE TABLE IF NOT EXISTS bronze.{name}_local{on_cluster} ({columns}) ENGINE = "
            f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/bronze/{name}', '{{replica}}')"
            f"{partition} ORDER BY {order_by}"
        )
        statements.append(
            f"CREATE TABLE IF NOT EXISTS bronze.{name}{on_cluster} AS bronze.{name}_local "
            f"ENGINE = Distributed(`{cluster}`, bronze, {name}_local, cityHash64(_batch_id))"
        )

    lineage = ", ".join(f"`{name}` {ch_type}" for name, ch_type in LINEAGE)
    for entity, columns in COLUMNS.items():
        source = ", ".join(f"`{column}` String" for column in columns)
        table(entity, f"{source}, {lineage}", "(_file_date, _batch_id, _row_number)", "toYYYYMM(_file_date)")
    table(
        "ingest_log",
        "file_path String, entity LowCardinality(String), file_date Nullable(Date), sha256 String, "
        "bytes UInt64, rows UInt64, status LowCardinality(String), reason LowCardinality(String), "
        "error String, batch_id String, version UInt32, started_at DateTime64(3, 'UTC'), "
        "finished_at DateTime64(3, 'UTC')",
        "(file_path, finished_at)",
        None,
    )
    return statements


def ensure_bronze(client: Client, cluster: str | None = None) -> None:
    for statement in bronze_ddl(cluster):
        client.command(statement)


def discover(raw_dir: Path, start: date | None = None, end: date | None = None) -> list[RawFile]:
    """Every `*.csv` under an entity folder of `raw_dir`, oldest day first.

    Files whose name breaks the contract are returned too (entity or date None) so they are
    rejected and logged rather than ignored.
    """
    raw_dir = raw_dir.resolve()
    found: list[RawFile] = []
    for entity in COLUMNS:
        root = raw_dir / entity
        if not root.is_dir():
            continue
        for dirpath, _dirnames, filenames in os.walk(root):
            for filename in filenames:
                if not filename.lower().endswith(".csv"):
                    continue
                path = Path(dirpath, filename)
                relative = path.relative_to(raw_dir)
                parsed = parse_name(relative)
                file_entity, file_date = parsed if parsed else (None, None)
                if file_date and ((start and file_date < start) or (end and file_date > end)):
                    continue
                found.append(RawFile(path, relative.as_posix(), file_entity, file_date))
    return sorted(found, key=lambda f: (f.file_date or date.min, ENTITY_ORDER.get(f.entity, 99), f.relative))


ENTITY_ORDER = {entity: i for i, entity in enumerate(COLUMNS)}


def inspect(raw: RawFile) -> tuple[str, int, Rejected | None]:
    """(sha256, bytes, why it cannot land or None) of a raw file, in one streaming pass."""
    if raw.entity is None or raw.file_date is None:
        why = "name does not follow <entity>/YYYY/MM/DD/<entity>_YYYYMMDD[_partN].csv; rename it"
        return "", 0, Rejected("bad_name", why)
    if raw.path.is_symlink():
        return "", 0, Rejected("symlink", "is a symbolic link; copy the real file into the raw directory")
    if not raw.path.is_file():  # reading a named pipe would wait forever
        return "", 0, Rejected("unreadable", "is not a regular file (a pipe, socket or device); "
                                             "replace it with the exported file")
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    size, head, problem = 0, "", None
    try:
        with open(raw.path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                if problem is None:
                    try:
                        text = decoder.decode(chunk)
                        if len(head) < 65536 and "\n" not in head:
                            head += text[:65536]
                    except UnicodeDecodeError as exc:
                        problem = Rejected(
                            "not_utf8", f"byte {size + exc.start} is not UTF-8; re-export the file as UTF-8"
                        )
                size += len(chunk)
        if problem is None:
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        problem = Rejected("not_utf8", "the file ends inside a UTF-8 character; re-export it as UTF-8")
    except OSError as exc:
        return "", 0, Rejected("unreadable", f"cannot be read ({exc.strerror}); fix its permissions")
    if problem is None and size == 0:
        problem = Rejected("empty", "is empty (0 bytes): not even a header row; re-export it")
    if problem is None:
        problem = _check_header(raw.entity, head)
    return digest.hexdigest(), size, problem


def _check_header(entity: str, head: str) -> Rejected | None:
    header = next(csv.reader([head.splitlines()[0] if head.strip() else ""]), [])
    expected = COLUMNS[entity]
    if sorted(header) == sorted(expected):
        return None  # the engine maps columns by name, so their order may differ
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    what = "; ".join(
        part
        for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"unexpected {', '.join(extra[:5])}" if extra else "",
            "repeated columns" if not missing and not extra else "",
        )
        if part
    )
    return Rejected("wrong_header", f"header does not match the {entity} contract ({what})")


def _structure(entity: str) -> str:
    return ", ".join(f"`{column}` String" for column in COLUMNS[entity])


def _insert_select(entity: str, source: str) -> str:
    columns = ", ".join(f"`{c}`" for c in COLUMNS[entity])
    lineage = ", ".join(f"`{name}`" for name, _ in LINEAGE)
    return (
        f"INSERT INTO bronze.`{entity}` ({columns}, {lineage}) "
        f"SELECT {columns}, {{relative:String}}, {{row_number}}, {{sha256:String}}, "
        f"{{file_date:Date}}, {{batch_id:String}}, now64(3, 'UTC') FROM {source}"
    )


@contextmanager
def _literal_path(path: Path) -> Iterator[Path]:
    """`path`, or a glob-free symlink to it: `file()` expands `*`, `?` and `{a,b}` in paths, so a
    raw directory named like `exports{2026}` would otherwise match nothing and land 0 rows."""
    if not _GLOB_CHARS.intersection(str(path)):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ecom-load-") as tmp:
        link = Path(tmp, "raw.csv")
        link.symlink_to(path)
        yield link


def _land_rows(client: Client, settings: Settings, raw: RawFile, sha256: str, batch_id: str) -> None:
    assert raw.entity is not None
    parameters = {
        "relative": raw.relative,
        "sha256": sha256,
        "file_date": raw.file_date,
        "batch_id": batch_id,
        "structure": _structure(raw.entity),
    }
    if settings.embedded:
        # The engine reads the file itself; `_row_number` is its 0-based record index.
        sql = _insert_select(raw.entity, "file({path:String}, 'CSVWithNames', {structure:String})")
        sql = sql.replace("{row_number}", "_row_number + 1")
        with _literal_path(raw.path) as path:
            client.command(sql, parameters={**parameters, "path": str(path)}, settings=INGEST_SETTINGS)
        return
    # A server cannot see this machine's files: stream them. One thread keeps row order.
    sql = _insert_select(raw.entity, "input({structure:String})")
    sql = sql.replace("{row_number}", "rowNumberInAllBlocks() + 1")
    client.command(
        f"{sql} FORMAT CSVWithNames",
        parameters=parameters,
        data=raw.path.read_bytes(),
        settings={**INGEST_SETTINGS, "max_threads": 1},
    )


def _log(client: Client, raw: RawFile, *, sha256: str, size: int, rows: int, status: str, reason: str,
         error: str, batch_id: str, version: int, started: str) -> None:
    client.command(
        f"INSERT INTO {LOG_TABLE} (file_path, entity, file_date, sha256, bytes, rows, status, reason, error, "
        "batch_id, version, started_at, finished_at) SELECT {path:String}, {entity:String}, "
        "{file_date:Nullable(Date)}, {sha256:String}, {bytes:UInt64}, {rows:UInt64}, {status:String}, "
        "{reason:String}, {error:String}, {batch_id:String}, {version:UInt32}, "
        "parseDateTime64BestEffort({started:String}, 3, 'UTC'), now64(3, 'UTC')",
        parameters={
            "path": raw.relative, "entity": raw.entity or "", "file_date": raw.file_date, "sha256": sha256,
            "bytes": size, "rows": rows, "status": status, "reason": reason, "error": error,
            "batch_id": batch_id, "version": version, "started": started,
        },
    )


def remove_orphan_batches(client: Client) -> int:
    """Delete rows of batches that never reached the ingest log (a load killed mid-file)."""
    removed = 0
    for entity in COLUMNS:
        where = (
            f"_batch_id NOT IN (SELECT batch_id FROM {LOG_TABLE} WHERE status = 'landed' "
            f"AND entity = '{entity}')"
        )
        orphans = int(client.command(f"SELECT count() FROM bronze.`{entity}` WHERE {where}"))
        if orphans:
            client.command(
                f"DELETE FROM bronze.`{entity}` WHERE {where}",
                settings={"lightweight_deletes_sync": 2, "mutations_sync": 2},
            )
            removed += orphans
    return removed


@dataclass
class _Ledger:
    """What the ingest log says about earlier files, kept current while a load runs."""

    landed: set[tuple[str, str]] = field(default_factory=set)  # (path, sha256)
    first_landing: dict[str, tuple[str, int]] = field(default_factory=dict)  # sha256 -> (path, rows)
    rejected: set[tuple[str, str]] = field(default_factory=set)  # (path, sha256)
    versions: dict[str, int] = field(default_factory=dict)  # path -> versions landed

    @classmethod
    def read(cls, client: Client) -> _Ledger:
        ledger = cls()
        for path, sha, status, rows in client.query(
            f"SELECT file_path, sha256, status, rows FROM {LOG_TABLE} "
            "WHERE status IN ('landed', 'rejected') ORDER BY finished_at"
        ).result_rows:
            if status == "landed":
                ledger.note_landed(path, sha, rows)
            else:
                ledger.rejected.add((path, sha))
        return ledger

    def note_landed(self, path: str, sha256: str, rows: int) -> None:
        self.landed.add((path, sha256))
        self.first_landing.setdefault(sha256, (path, rows))
        self.versions[path] = self.versions.get(path, 0) + 1

    def why_skip(self, path: str, sha256: str) -> str | None:
        """Why a file need not land: the same bytes landed at this path, or (with data rows) at another.

        Header-only files of different days have the same bytes; each still lands (0 rows) so the
        log shows every day's export arrived.
        """
        if (path, sha256) in self.landed:
            return "already landed"
        first = self.first_landing.get(sha256)
        if first and first[1] > 0:
            return f"same content already landed as {first[0]}"
        return None


def load(
    settings: Settings,
    client: Client,
    start: date | None = None,
    end: date | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    files: Iterable[RawFile] | None = None,
) -> LoadResult:
    """Land every file of `settings.raw_dir` (within start..end) not landed yet."""
    ensure_bronze(client, settings.cluster)
    result = LoadResult(orphan_rows_removed=remove_orphan_batches(client))
    ledger = _Ledger.read(client)
    for raw in discover(settings.raw_dir, start, end) if files is None else files:
        outcome = _load_one(client, settings, raw, ledger)
        result.outcomes.append(outcome)
        if on_file:
            on_file(outcome)
    return result


def _load_one(client: Client, settings: Settings, raw: RawFile, ledger: _Ledger) -> FileOutcome:
    started = client.command("SELECT toString(now64(3, 'UTC'))")
    sha256, size = "", 0
    try:
        sha256, size, problem = inspect(raw)
        if problem:
            raise problem
        if why := ledger.why_skip(raw.relative, sha256):
            return FileOutcome(raw, "skipped", reason="already_landed", detail=why)
        batch_id = uuid.uuid4().hex
        version = ledger.versions.get(raw.relative, 0) + 1
        try:
            _land_rows(client, settings, raw, sha256, batch_id)
        except DatabaseError as exc:
            _discard_batch(client, raw, batch_id)
            raise Rejected("parse_error", f"cannot be parsed as CSV: {_engine_message(exc)}") from None
        rows = int(client.command(
            f"SELECT count() FROM bronze.`{raw.entity}` "
            "WHERE _file_date = {d:Date} AND _batch_id = {b:String}",
            parameters={"d": raw.file_date, "b": batch_id},
        ))
        _log(client, raw, sha256=sha256, size=size, rows=rows, status="landed", reason="", error="",
             batch_id=batch_id, version=version, started=started)
        ledger.note_landed(raw.relative, sha256, rows)
        detail = f"version {version} of this path" if version > 1 else ""
        return FileOutcome(raw, "landed", rows=rows, detail=detail)
    except Rejected as exc:
        if (raw.relative, sha256) in ledger.rejected:
            return FileOutcome(raw, "skipped", reason=exc.reason, detail=f"rejected earlier: {exc}")
        _log(client, raw, sha256=sha256, size=size, rows=0, status="rejected", reason=exc.reason,
             error=str(exc), batch_id="", version=0, started=started)
        ledger.rejected.add((raw.relative, sha256))
        return FileOutcome(raw, "rejected", reason=exc.reason, detail=str(exc))


def _discard_batch(client: Client, raw: RawFile, batch_id: str) -> None:
    client.command(
        f"DELETE FROM bronze.`{raw.entity}` WHERE _batch_id = {{b:String}}",
        parameters={"b": batch_id},
        settings={"lightweight_deletes_sync": 2, "mutations_sync": 2},
    )


def _engine_message(exc: Exception) -> str:
    """The engine's own sentence, without stack trace or version trailer."""
    text = " ".join(str(exc).split())
    for marker in ("DB::Exception: ", "Exception: "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    for cut in (" (version ", ". Stack trace", " Stack trace"):
        text = text.split(cut, 1)[0]
    return text[:300]


def print_summary(result: LoadResult, out: TextIO | None = None) -> None:
    """What a load did, for people: counts first, then why nothing landed when nothing did."""
    out = out or sys.stdout
    landed, rejected, skipped = result.landed, result.rejected, result.skipped
    print(f"landed {len(landed)} files, {result.rows:,} rows; rejected {len(rejected)}; "
          f"skipped {len(skipped)}", file=out)
    if result.orphan_rows_removed:
        print(f"removed {result.orphan_rows_removed:,} rows of an interrupted earlier load", file=out)
    already = [o for o in skipped if o.reason == "already_landed"]
    earlier = [o for o in skipped if o.reason != "already_landed"]
    if not result.outcomes:
        print("nothing to land: no raw files found (check ECOM_RAW_DIR and --start/--end)", file=out)
    elif not landed and not rejected:
        print(f"nothing new to land: {len(already)} files already landed (same sha256 in bronze.ingest_log)",
              file=out)
    if earlier:
        print(f"{len(earlier)} files stay rejected from earlier loads (see bronze.ingest_log)", file=out)
