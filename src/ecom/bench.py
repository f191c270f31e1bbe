"""`ecom bench`: the performance figures of SPEC section 8, measured side by side in one run.

One generated world, cached under `data/bench` (or `--cache-dir`), serves every figure:

* **Landing** order lines into bronze with `ecom load`, next to the engine's own
  `INSERT ... SELECT FROM file()` over a glob of the same files into a plain all-String
  MergeTree table (the ceiling), DuckDB `read_csv` into a DuckDB file (all VARCHAR), and
  pandas `to_sql` into a throwaway PostgreSQL cluster (on a sample: it is two orders of
  magnitude slower).
* **Full refresh** raw to gold, what `ecom run` does on an empty warehouse (land every file,
  then `dbt build --full-refresh`): wall time, peak memory, time per layer.
* **One more day** on top of each history (`ecom run --date`), and the ratio between them.

History grows 10x by having 10x more days at the same daily volume, so the added day is the
same size on both: 1x is the first `days` days of the world, 10x the first `10 * days`, and the
added day the next one, on the same weekday. For that the world is generated without the
generator's yearly growth (10% a year would make the tenth year's day 2.4x the first's).

Every measurement runs in a child process (`python -m ecom.bench SPEC RESULT`): chDB hosts one
engine per process, and the child's peak RSS (`os.wait4`) is the step's peak memory. The
pipeline child starts the engine with query logging on (a config file in the connection
string; chDB has no `system.query_log` otherwise), then runs the loader and dbt through
`dbtRunner` (the dbt CLI's own entry point) on that engine, so `system.query_log` says what
every model read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from ecom.config import Settings, dbt_executable, project_dir
from ecom.contract import COLUMNS, LAST_DAY, MAX_ORDERS_PER_DAY, unloadable_days

ORDER_ITEMS = "order_items"
SEED = 42
DIRTY_RATE = 0.02
ORIGIN = date(2016, 6, 15)  # the added days (origin + days, origin + 10 * days) fall in quiet months
FACTOR = 10
# Order lines per (orders_per_day x day) of the generator with no yearly growth: 1 + Poisson(1.5)
# lines per order, capped at 9, times the mean weekday and month demand.
LINES_PER_ORDER_DAY = 2.6
GB = 1 << 30
GENERATOR_SOURCES = ("generate.py", "world.py", "contract.py")  # src/ecom modules whose code shapes the world
LOCK_FILE = "bench.lock"  # in the cache folder, held by the run that uses it
LAYER_ORDER = ["seeds", "bronze", "silver", "gold", "data_tests"]

# chDB keeps no query log unless its configuration names one.
QUERY_LOG_CONFIG = """<clickhouse>
  <query_log>
    <database>system</database>
    <table>query_log</table>
    <flush_interval_milliseconds>1000</flush_interval_milliseconds>
  </query_log>
</clickhouse>
"""


@dataclass(frozen=True)
class Scale:
    """How big the benchmark is: `lines` order lines over 10x history of `days_1x * 10` days."""

    name: str
    lines: int
    days_1x: int
    pg_sample_lines: int
    landing_rounds: int = 1

    @property
    def orders_per_day(self) -> int:
        return max(1, round(self.lines / (FACTOR * self.days_1x * LINES_PER_ORDER_DAY)))

    @property
    def days_total(self) -> int:
        return FACTOR * self.days_1x + 1  # the 10x history and its added day


# The landing contenders take a few seconds each, where the machine's state moves their times by
# a tenth or more: the full run lands three rounds, the contenders in turn, and keeps each one's
# median.
FULL = Scale("full", lines=10_000_000, days_1x=364, pg_sample_lines=200_000, landing_rounds=3)
QUICK = Scale("quick", lines=50_000, days_1x=7, pg_sample_lines=20_000)


class StepFailed(RuntimeError):
    """A measurement could not be taken; the message says why and where its log is."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # negative: the signal that ended the step


def _how_it_ended(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        return f"killed (signal {-exit_code})"
    return f"failed (exit {exit_code})" if exit_code else "failed"


# ---------------------------------------------------------------------------------------------
# The dataset


@dataclass
class Dataset:
    raw_dir: Path
    root: Path
    origin: date
    days_1x: int
    orders_per_day: int
    lines_by_day: dict[str, int]  # YYYY-MM-DD -> order lines in well-formed files
    files_by_day: dict[str, int]  # YYYY-MM-DD -> raw files (all entities, malformed included)
    order_item_files: dict[str, list[str]]  # YYYY-MM-DD -> well-formed order_items files (relative)
    sizes: dict[str, int]  # relative path -> bytes, of every raw file
    generated_seconds: float | None = None

    def day(self, index: int) -> date:
        return self.origin + timedelta(days=index)

    def history_end(self, factor: int) -> date:
        return self.day(factor * self.days_1x - 1)

    def added_day(self, factor: int) -> date:
        return self.day(factor * self.days_1x)

    def _days(self, first: date, last: date) -> list[str]:
        return [d for d in self.lines_by_day if first.isoformat() <= d <= last.isoformat()]

    def lines(self, first: date, last: date) -> int:
        return sum(self.lines_by_day[d] for d in self._days(first, last))

    def files(self, first: date, last: date) -> int:
        return sum(self.files_by_day[d] for d in self._days(first, last))

    def item_files(self, first: date, last: date) -> list[str]:
        return [f for d in self._days(first, last) for f in self.order_item_files[d]]


@contextlib.contextmanager
def _flat_volume() -> Iterator[bool]:
    """The generator without its yearly growth, so every year has the same daily volume."""
    from ecom import generate as generator

    if not hasattr(generator, "YEARLY_GROWTH"):
        yield False
        return
    before = generator.YEARLY_GROWTH
    generator.YEARLY_GROWTH = 0.0
    try:
        yield True
    finally:
        generator.YEARLY_GROWTH = before


def prepare_dataset(scale: Scale, cache_dir: Path, log: Callable[[str], None]) -> Dataset:
    """The world of `scale`, generated once and cached; landing sets of hard links beside it."""
    from ecom.generate import generate

    opd = scale.orders_per_day
    key = f"world-s{SEED}-opd{opd}-d{scale.days_total}-r{DIRTY_RATE}-flat-{ORIGIN:%Y%m%d}"
    root = cache_dir / key
    raw_dir = root / "raw"
    info_path = root / "dataset.json"
    generated_seconds = None
    generator = _generator_fingerprint()
    info, problem = _cached_world(info_path, raw_dir, generator)
    if problem:
        if info_path.is_file():
            log(f"the cached world in {root} {problem}: generating it again")
        shutil.rmtree(root, ignore_errors=True)
        partial = root / "raw.partial"
        partial.mkdir(parents=True)
        log(f"generating {scale.days_total} days at {opd} orders a day (~{scale.lines * 1.1:,.0f} order lines) "
            f"into {root} (cached for later runs)")
        started = time.perf_counter()
        with _flat_volume() as flat:
            generate(partial, start=ORIGIN, days=scale.days_total, orders_per_day=opd, seed=SEED,
                     dirty_rate=DIRTY_RATE, progress=True)
        generated_seconds = time.perf_counter() - started
        partial.rename(raw_dir)
        lines, files, items, paths = _read_manifests(raw_dir)
        info = {
            "origin": ORIGIN.isoformat(), "days_1x": scale.days_1x, "orders_per_day": opd,
            "flat_volume": flat, "generated_seconds": round(generated_seconds, 1), "generator": generator,
            "lines_by_day": lines, "files_by_day": files, "order_item_files": items,
            "sizes": {relative: (raw_dir / relative).stat().st_size for relative in paths},
        }
        info_path.write_text(json.dumps(info))
        log(f"generated {sum(lines.values()):,} order lines in {generated_seconds:.0f} s")
    dataset = Dataset(raw_dir=raw_dir, root=root, origin=date.fromisoformat(info["origin"]),
                      days_1x=info["days_1x"], orders_per_day=info["orders_per_day"],
                      lines_by_day=info["lines_by_day"], files_by_day=info["files_by_day"],
                      order_item_files=info["order_item_files"], sizes=info["sizes"],
                      generated_seconds=generated_seconds or info.get("generated_seconds"))
    for factor in (1, FACTOR):
        _landing_set(dataset, factor, log)
    return dataset


def _generator_fingerprint() -> str:
    """A digest of what shapes the generated bytes: the generator's code, the reference data and
    file layout it imports, and numpy's version (its random streams). Any change to them gives
    another world, so a cached one from before is generated again."""
    from importlib.metadata import version

    from ecom import generate as generator

    digest = hashlib.sha256(f"numpy {version('numpy')}".encode())
    for name in GENERATOR_SOURCES:
        digest.update(Path(generator.__file__).with_name(name).read_bytes())
    return digest.hexdigest()[:16]


def _cached_world(info_path: Path, raw_dir: Path, generator: str) -> tuple[dict[str, Any], str | None]:
    """The cached world's dataset.json, and why it cannot be used as it is (None when it can).

    A cheap check, file sizes rather than contents, so a world deleted, cut short or added to
    since it was generated is caught before it gives wrong figures.
    """
    try:
        info = json.loads(info_path.read_text())
        sizes = info["sizes"]
    except FileNotFoundError:
        return {}, "is not there"
    except (OSError, ValueError, KeyError):
        return {}, f"has an unreadable or older {info_path.name}"
    if info.get("generator") != generator:
        return info, f"was written by another version of the generator ({', '.join(GENERATOR_SOURCES)} or numpy)"
    if differ := _differing(raw_dir, sizes):
        return info, (f"differs from its {info_path.name} in {len(differ):,} of {len(sizes):,} files "
                      f"(missing, added or resized: {differ[0]}{', ...' if len(differ) > 1 else ''})")
    return info, None


def _differing(folder: Path, sizes: dict[str, int]) -> list[str]:
    """The files under `folder` the loader reads (`discover`: a `.csv.gz` or an export saved as
    `.txt` too, which it rejects) missing, added or of another size than `sizes` (relative path ->
    bytes) says."""
    from ecom.load import discover

    found = {raw.relative: raw.path.lstat().st_size for raw in discover(folder)}
    return sorted(r for r in found.keys() | sizes.keys() if found.get(r) != sizes.get(r))


def _read_manifests(raw_dir: Path) -> tuple[dict[str, int], dict[str, int], dict[str, list[str]], list[str]]:
    lines: dict[str, int] = {}
    files: dict[str, int] = {}
    items: dict[str, list[str]] = {}
    paths: list[str] = []
    for path in sorted((raw_dir / "_manifest").glob("manifest_*.json")):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        day = manifest["date"]
        good = [(name, f) for name, f in manifest["files"].items() if f["entity"] == ORDER_ITEMS and not f["malformed"]]
        lines[day] = sum(f["rows"] for _, f in good)
        files[day] = len(manifest["files"])
        items[day] = sorted(name for name, _ in good)
        paths += manifest["files"]
    return lines, files, items, paths


def landing_dir(dataset: Dataset, factor: int) -> Path:
    return dataset.root / f"landing-{factor}x"


def _landing_set(dataset: Dataset, factor: int, log: Callable[[str], None]) -> Path:
    """Hard links to the well-formed order_items files of the `factor`x history, laid out like a raw
    directory: every contender reads exactly these files (one glob), and the loader logs the same
    relative paths as on the real raw directory."""
    target = landing_dir(dataset, factor)
    done = target / ".complete"
    relatives = dataset.item_files(dataset.origin, dataset.history_end(factor))
    if done.is_file():
        # The glob reads whatever is there: a file deleted or added since would change the figures.
        if not (differ := _differing(target, {r: dataset.sizes[r] for r in relatives})):
            return target
        log(f"the landing set {target} differs from the dataset ({len(differ):,} of {len(relatives):,} files missing, "
            "added or resized): making it again")
    shutil.rmtree(target, ignore_errors=True)
    for relative in relatives:
        link = target / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(dataset.raw_dir / relative, link)
        except OSError:
            shutil.copyfile(dataset.raw_dir / relative, link)
    done.touch()
    return target


def _landing_glob(dataset: Dataset, factor: int) -> str:
    return str(landing_dir(dataset, factor) / ORDER_ITEMS / "*" / "*" / "*" / "*.csv")


def _unlike_dataset(dataset: Dataset, files: int, lines: int, want_files: int, want_lines: int) -> str | None:
    """Why a step's figure is not for the dataset's files: it read other files or landed other
    order lines than dataset.json lists (None when it did not)."""
    if (files, lines) == (want_files, want_lines):
        return None
    return (f"read {files:,} files and landed {lines:,} order lines where {dataset.root / 'dataset.json'} lists "
            f"{want_files:,} and {want_lines:,}; if the cached world changed during the run, run again, "
            "else see the step's log")


# ---------------------------------------------------------------------------------------------
# Child processes: each measurement in a process of its own


@dataclass
class Runner:
    """Starts measurement children, each with its spec, result and log files in `run_dir`."""

    run_dir: Path
    log: Callable[[str], None]
    heartbeat: float = 30.0
    count: int = 0

    def run(self, kind: str, spec: dict[str, Any], label: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        self.count += 1
        stem = self.run_dir / "steps" / f"{self.count:02d}-{kind}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        spec_path, out_path, log_path = (stem.with_suffix(s) for s in (".spec.json", ".result.json", ".log"))
        spec_path.write_text(json.dumps({"kind": kind, **spec}, default=str))
        self.log(f"{label} ...")
        started = time.monotonic()
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "ecom.bench", str(spec_path), str(out_path)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, cwd=project_dir(),
            )
            try:
                next_beat = started + self.heartbeat
                while True:
                    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.monotonic() >= next_beat:
                        self.log(f"  {label}: {time.monotonic() - started:.0f} s so far")
                        next_beat += self.heartbeat
                    time.sleep(0.2)
            except BaseException:
                process.kill()
                process.wait()
                raise
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - started
        if process.returncode != 0 or not out_path.is_file():
            tail = " | ".join(_tail(log_path, 3))
            raise StepFailed(f"{label} {_how_it_ended(process.returncode)} after {elapsed:.0f} s"
                             f"{': ' + tail if tail else ''} (log: {log_path})", process.returncode)
        result = json.loads(out_path.read_text())
        result["peak_rss_bytes"] = usage.ru_maxrss * 1024  # Linux reports KiB
        result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)  # the child's, engine and Python
        result["log"] = str(log_path)
        self.log(f"  {label}: done in {elapsed:.1f} s")
        return result


def _tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return []
    return [" ".join(line.split())[:300] for line in text[-lines:]]


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _structure(entity: str) -> str:
    return ", ".join(f"`{column}` String" for column in COLUMNS[entity])


def _child_loader(spec: dict[str, Any]) -> dict[str, Any]:
    """`ecom load` of the landing set: the project's loader, timed around `load()`; then a check that
    every file's `_row_number`s run 1..rows."""
    from ecom.load import discover, load
    from ecom.warehouse import session

    settings = Settings(raw_dir=Path(spec["raw_dir"]), chdb_path=Path(spec["warehouse"]))
    files = discover(settings.raw_dir)
    with session(settings) as client:
        engine_version = client.command("SELECT version()")
        started = time.perf_counter()
        result = load(settings, client, files=files)
        seconds = time.perf_counter() - started
        lines = int(client.command(f"SELECT count() FROM bronze.{ORDER_ITEMS}"))
        numbered, gaps = client.query(
            f"SELECT count(), countIf(rows != last OR first != 1) FROM (SELECT _batch_id, count() AS rows, "
            f"max(_row_number) AS last, min(_row_number) AS first FROM bronze.{ORDER_ITEMS} GROUP BY _batch_id)"
        ).result_rows[0]
        inserts = int(client.command("SELECT uniqExact(started_at) FROM bronze.ingest_log "
                                     f"WHERE status = 'landed' AND entity = '{ORDER_ITEMS}'"))
    return {"seconds": seconds, "files": len(result.landed), "lines": lines, "rejected": len(result.rejected),
            "inserts": inserts, "engine_version": engine_version,
            "row_numbers_exact": int(numbered) == len(result.landed) and not gaps}


def _child_engine(spec: dict[str, Any]) -> dict[str, Any]:
    """The ceiling: one `INSERT ... SELECT FROM file()` over the glob, plain all-String MergeTree."""
    import chdb

    connection = chdb.connect(spec["warehouse"])
    cursor = connection.cursor()
    structure = _structure(ORDER_ITEMS)
    cursor.execute(f"CREATE TABLE default.{ORDER_ITEMS} ({structure}) ENGINE = MergeTree ORDER BY tuple()")
    started = time.perf_counter()
    cursor.execute(f"INSERT INTO default.{ORDER_ITEMS} SELECT * FROM "
                   f"file({_sql_string(spec['glob'])}, 'CSVWithNames', {_sql_string(structure)})")
    seconds = time.perf_counter() - started
    cursor.execute(f"SELECT count(), uniqExact(_part) FROM default.{ORDER_ITEMS}")
    lines, parts = cursor.fetchone()
    cursor.execute("SELECT value FROM system.settings WHERE name = 'max_threads'")
    threads = cursor.fetchone()[0]
    connection.close()
    return {"seconds": seconds, "lines": int(lines), "parts": int(parts), "max_threads": threads}


def _child_duckdb(spec: dict[str, Any]) -> dict[str, Any]:
    """DuckDB `read_csv` of the same glob, every column VARCHAR, into a DuckDB file."""
    import duckdb

    connection = duckdb.connect(spec["database"])
    started = time.perf_counter()
    connection.execute(f"CREATE TABLE {ORDER_ITEMS} AS SELECT * FROM read_csv({_sql_string(spec['glob'])}, "
                       "header = true, all_varchar = true)")
    connection.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    lines = connection.execute(f"SELECT count(*) FROM {ORDER_ITEMS}").fetchone()[0]
    threads = connection.execute("SELECT current_setting('threads')").fetchone()[0]
    connection.close()
    return {"seconds": seconds, "lines": int(lines), "threads": threads}


def _child_pandas_postgres(spec: dict[str, Any]) -> dict[str, Any]:
    """pandas `read_csv` (all str) of the sample files, then `to_sql` with its defaults."""
    import pandas as pd
    import sqlalchemy

    engine = sqlalchemy.create_engine(spec["dsn"])
    started = time.perf_counter()
    frame = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in spec["files"]], ignore_index=True)
    frame.to_sql(ORDER_ITEMS, engine, if_exists="replace", index=False)
    seconds = time.perf_counter() - started
    with engine.connect() as connection:
        lines = connection.execute(sqlalchemy.text(f"SELECT count(*) FROM {ORDER_ITEMS}")).scalar_one()
    engine.dispose()
    return {"seconds": seconds, "lines": int(lines)}


def _child_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """`ecom run`: land the raw files of start..end, then `dbt build`, on one engine with a query log."""
    import chdb
    from dbt.cli.main import dbtRunner

    from ecom import reference
    from ecom.load import load
    from ecom.warehouse import session

    warehouse = Path(spec["warehouse"])
    warehouse.mkdir(parents=True, exist_ok=True)
    os.environ["ECOM_CHDB_PATH"] = str(warehouse)
    os.environ["DBT_TARGET"] = "dev"
    config = Path(spec["run_dir"]) / "chdb-query-log.xml"
    config.write_text(QUERY_LOG_CONFIG)
    engine, query_log_note = None, ""
    try:  # held open until the end: the loader and dbt open their clients on this same engine
        engine = chdb.connect(f"file:{warehouse}?config-file={config}")
    except Exception as exc:  # the figures do not depend on it
        query_log_note = f"no query log: the engine did not start with it ({' '.join(str(exc).split())[:200]})"
    mark = _engine_now(engine)

    settings = Settings(raw_dir=Path(spec["raw_dir"]), chdb_path=warehouse)
    start = date.fromisoformat(spec["start"]) if spec.get("start") else None
    end = date.fromisoformat(spec["end"])
    started = time.perf_counter()
    with session(settings) as client:
        landing = load(settings, client, start, end)
        reference_current = not spec.get("full_refresh") and reference.is_current(client, project_dir())
    landed = time.perf_counter()
    dbt_mark = _engine_now(engine)
    root = project_dir()
    target = Path(spec["target_path"])
    args = ["build", "--project-dir", str(root), "--profiles-dir", str(root), "--target", "dev",
            "--target-path", str(target), "--log-path", spec["log_path"],
            "--exclude-resource-type", "unit_test"]  # as `ecom run` builds
    if spec.get("full_refresh"):
        args.append("--full-refresh")
    if reference_current:
        args += reference.LEAVE_OUT
    outcome = dbtRunner().invoke(args)
    if outcome.success and not reference_current:
        with session(settings) as client:
            reference.record(client, root)
    finished = time.perf_counter()

    statuses, layers, errors = _dbt_layers(target)
    result = {
        "seconds": finished - started,
        "load_seconds": landed - started,
        "dbt_seconds": finished - landed,
        "files_landed": len(landing.landed),
        "files_rejected": len(landing.rejected),
        "files_seen": len(landing.outcomes),
        "rows_landed": landing.rows,
        "order_lines_landed": sum(o.rows for o in landing.landed if o.file.entity == ORDER_ITEMS),
        "dbt_success": bool(outcome.success),
        "dbt_statuses": statuses,
        "dbt_errors": errors,
        "layers": layers,
        "query_log": _query_log(engine, mark, dbt_mark) if engine is not None else None,
        "query_log_note": query_log_note,
    }
    if engine is not None:
        engine.close()
    return result


def _engine_now(engine: Any) -> str | None:
    if engine is None:
        return None
    cursor = engine.cursor()
    cursor.execute("SELECT toString(now64(6))")
    return cursor.fetchone()[0]


def _dbt_layers(target: Path) -> tuple[dict[str, int], dict[str, dict[str, float]], list[str]]:
    """Node statuses, per layer (the model's folder) the seconds its models and tests took, and
    the first errors."""
    try:
        results = json.loads((target / "run_results.json").read_text())["results"]
        manifest = json.loads((target / "manifest.json").read_text())
    except (OSError, ValueError, KeyError):
        return {}, {}, []
    nodes = {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}
    statuses: dict[str, int] = {}
    layers: dict[str, dict[str, float]] = {}
    errors: list[str] = []
    for result in results:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        if result["status"] in ("error", "fail", "runtime error") and len(errors) < 5:
            message = " ".join(str(result.get("message") or "").split())
            errors.append(f"{result['unique_id']}: {message[:400]}")
        node = nodes.get(result["unique_id"], {})
        layer = _layer(node.get("original_file_path", ""), node.get("resource_type", ""))
        kind = "tests" if node.get("resource_type") in ("test", "unit_test") else "build"
        entry = layers.setdefault(layer, {"build_seconds": 0.0, "tests_seconds": 0.0, "nodes": 0})
        entry[f"{kind}_seconds"] += float(result.get("execution_time") or 0.0)
        entry["nodes"] += 1
    return statuses, layers, errors


def _layer(path: str, resource_type: str) -> str:
    parts = Path(path).parts
    if resource_type == "seed" or parts[:1] == ("seeds",):
        return "seeds"
    if parts[:1] == ("models",) and len(parts) > 2:
        return parts[1]
    return parts[0] if parts else "other"


def _query_log(engine: Any, since: str | None, dbt_since: str | None) -> dict[str, Any]:
    """Rows read and written by every query since `since`, in total and per dbt node (from the
    query comment dbt puts on each statement). Queries without one are the loader's before
    `dbt_since`; after it, what dbt sends without its comment (catalog and schema queries)."""
    cursor = engine.cursor()
    cursor.execute("SYSTEM FLUSH LOGS")
    node = (
        "multiIf(query LIKE '%\"node_id\": \"%', extract(query, '\"node_id\": \"([^\"]+)\"'), "
        f"event_time_microseconds < toDateTime64({_sql_string(dbt_since or '')}, 6), 'ecom load', "
        "'dbt, no node comment')"
    )
    where = f"type = 'QueryFinish' AND event_time_microseconds >= toDateTime64({_sql_string(since or '')}, 6)"
    # CPU time (user + system, all threads) rather than duration: with more dbt threads than
    # cores, a statement's duration includes the time it waited for the others.
    cpu = "(ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds']) / 1e6"
    cursor.execute(f"SELECT count(), sum(read_rows), sum(read_bytes), sum(written_rows), max(memory_usage), "
                   f"round(sum({cpu}), 2) FROM system.query_log WHERE {where}")
    queries, read_rows, read_bytes, written_rows, memory, cpu_seconds = cursor.fetchone()
    cursor.execute(f"SELECT {node} AS node, count(), sum(read_rows), sum(written_rows), "
                   f"round(sum(query_duration_ms) / 1000, 2), round(sum({cpu}), 2), max(memory_usage) "
                   f"FROM system.query_log WHERE {where} GROUP BY node ORDER BY sum({cpu}) DESC LIMIT 25")
    top = [{"node": n, "queries": int(q), "read_rows": int(r), "written_rows": int(w), "seconds": float(s),
            "cpu_seconds": float(c), "max_memory_bytes": int(m)} for n, q, r, w, s, c, m in cursor.fetchall()]
    return {"queries": int(queries), "read_rows": int(read_rows or 0), "read_bytes": int(read_bytes or 0),
            "written_rows": int(written_rows or 0), "max_query_memory_bytes": int(memory or 0),
            "engine_cpu_seconds": float(cpu_seconds or 0), "by_node": top}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "loader": _child_loader,
    "engine": _child_engine,
    "duckdb": _child_duckdb,
    "pandas_postgres": _child_pandas_postgres,
    "pipeline": _child_pipeline,
}


def child_main(argv: list[str]) -> int:
    spec_path, out_path = (Path(a) for a in argv)
    spec = json.loads(spec_path.read_text())
    result = CHILDREN[spec["kind"]](spec)
    out_path.write_text(json.dumps(result, default=str))
    return 0


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster for the pandas peer


class PostgresUnavailable(RuntimeError):
    pass


def _postgres_bindir() -> Path | None:
    if Path("/usr/local/bin/initdb").exists() and Path("/usr/local/bin/pg_ctl").exists():
        return Path("/usr/local/bin")
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    found = [c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()]
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_cluster(log: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    """(SQLAlchemy URL, server version) of a new cluster on a free 127.0.0.1 port, removed on exit.

    PostgreSQL refuses to run as root: as root the cluster belongs to `nobody` (through runuser).
    """
    bindir = _postgres_bindir()
    if bindir is None:
        raise PostgresUnavailable("no PostgreSQL binaries (initdb, pg_ctl in /usr/local/bin or "
                                  "/usr/lib/postgresql/*/bin); install Debian's postgresql")
    home = Path(tempfile.mkdtemp(prefix="ecom-bench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(home, ignore_errors=True)
            raise PostgresUnavailable("running as root and no runuser to start PostgreSQL as another user")
        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        as_user = [runuser, "-u", "nobody", "--"]
    data, logfile, port = home / "data", home / "server.log", _free_port()

    def pg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=timeout, cwd=home)

    started = False
    try:
        step = pg(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        if step.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {_last_line(step.stderr or step.stdout)}")
        step = pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t", "60",
                  "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start")
        if step.returncode != 0:
            server_log = logfile.read_text(errors="replace") if logfile.exists() else ""
            why = _server_failure(server_log or step.stderr or step.stdout)
            raise PostgresUnavailable(f"pg_ctl start failed: {why}")
        started = True
        version = pg(str(bindir / "postgres"), "--version").stdout.strip()
        log(f"PostgreSQL started on 127.0.0.1:{port} ({version})")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres", version
    finally:
        if started:
            pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _server_failure(server_log: str) -> str:
    """Why the server stopped: the first FATAL, ERROR or PANIC line of its log, after the line that
    says what it could not do when there is one. The last line is only "database system is shut
    down", and the cause of a busy port is a LOG line ("could not bind ...: Address already in use")
    before "FATAL: could not create any TCP/IP sockets"."""
    # Without the "2026-01-01 00:00:00.000 UTC [pid] " prefix, spaces squeezed.
    lines = [" ".join(re.sub(r"^.*?\[\d+\]\s*", "", line).split()) for line in server_log.splitlines()]
    fatal = next((i for i, line in enumerate(lines) if re.match(r"(FATAL|ERROR|PANIC):", line)), None)
    if fatal is None:
        return _last_line(server_log)
    cause = next((line for line in lines[:fatal] if "could not" in line), None)
    return "; ".join(line for line in (cause, lines[fatal]) if line)[:300]


# ---------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class Row:
    """One figure: a positive `value` in `unit`, or why it is missing (`skipped`, `error`)."""

    id: str
    group: str
    label: str
    value: float | None = None
    unit: str = ""
    skipped: str | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    target: str
    measured: str
    met: bool | None
    gap: str = ""


def machine_info() -> dict[str, Any]:
    memory = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {"cores": usable, "cpu": model, "memory_gb": round(memory / GB, 1),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("chdb", "clickhouse-connect", "duckdb", "dbt-core", "dbt-clickhouse", "pandas", "sqlalchemy",
                 "psycopg2-binary"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_bench(scale: Scale, cache_dir: Path, postgres: bool = True, keep: bool = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every measurement of `scale`; returns the figures (see `render` and the JSON schema in
    BENCHMARKS.md)."""
    log = log or (lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True))
    began = datetime.now(UTC)
    machine = machine_info()
    dataset = prepare_dataset(scale, cache_dir.resolve(), log)
    run_dir = cache_dir.resolve() / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    runner = Runner(run_dir, log)
    rows: list[Row] = []
    info: dict[str, Any] = {"engine_version": None, "postgresql": None}

    for factor in (1, FACTOR):
        rows += _landing_rows(runner, dataset, factor, info, keep, scale.landing_rounds)
    rows.append(_postgres_row(runner, dataset, scale, postgres, info, log))
    pipeline = _pipeline_rows(runner, dataset, run_dir, keep)
    rows += pipeline

    if not keep:
        for leftover in ("warehouse", "landing", "target"):
            shutil.rmtree(run_dir / leftover, ignore_errors=True)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    found_versions = versions()
    found_versions["clickhouse engine"] = info["engine_version"] or "unknown"
    found_versions["postgresql"] = info["postgresql"] or "not run"
    return {
        "date": began.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - began).total_seconds(), 1),
        "scale": scale.name,
        "machine": machine,
        "versions": found_versions,
        "dataset": {
            "raw_dir": str(dataset.raw_dir),
            "origin": dataset.origin.isoformat(),
            "orders_per_day": dataset.orders_per_day,
            "days_1x": dataset.days_1x,
            "days_10x": FACTOR * dataset.days_1x,
            "lines_1x": dataset.lines(dataset.origin, dataset.history_end(1)),
            "lines_10x": dataset.lines(dataset.origin, dataset.history_end(FACTOR)),
            "files_1x": dataset.files(dataset.origin, dataset.history_end(1)),
            "files_10x": dataset.files(dataset.origin, dataset.history_end(FACTOR)),
            "generated_seconds": dataset.generated_seconds,
        },
        "rows": [asdict(r) for r in rows],
        "targets": [asdict(t) for t in evaluate_targets(rows, scale)],
        "logs": str(run_dir / "steps"),
    }


def _measure(row: Row, step: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return step()
    except StepFailed as exc:
        row.error = str(exc)
        row.detail["exit_code"] = exc.exit_code
        return None


def _landing_rows(runner: Runner, dataset: Dataset, factor: int, info: dict[str, Any], keep: bool,
                  rounds: int = 1) -> list[Row]:
    """Each contender lands the files `rounds` times, in turn with the others, each time into a
    store of its own; its row holds the run of median time (`runs`: every run's seconds)."""
    size = f"{factor}x"
    source = landing_dir(dataset, factor)
    glob = _landing_glob(dataset, factor)
    want_files = len(dataset.item_files(dataset.origin, dataset.history_end(factor)))
    want_lines = dataset.lines(dataset.origin, dataset.history_end(factor))
    globbed = len(list(source.glob(f"{ORDER_ITEMS}/*/*/*/*.csv")))  # what the engine and DuckDB read
    work = runner.run_dir / "landing"
    specs = [
        ("ecom_load", "ecom load (bronze with lineage and ingest log)", "loader",
         {"raw_dir": str(source), "warehouse": str(work / f"loader-{size}")}),
        ("engine_ceiling", "engine INSERT ... SELECT FROM file(glob), plain String MergeTree", "engine",
         {"glob": glob, "warehouse": str(work / f"engine-{size}")}),
        ("duckdb", "DuckDB read_csv (all VARCHAR) into a DuckDB file", "duckdb",
         {"glob": glob, "database": str(work / f"duckdb-{size}.duckdb")}),
    ]
    rows = {key: Row(id=f"landing.{key}.{size}", group="landing", label=label, unit="lines/s")
            for key, label, _, _ in specs}
    results: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _, _ in specs}
    for round_ in range(1, rounds + 1):
        of = f" (round {round_} of {rounds})" if rounds > 1 else ""
        for key, label, kind, spec in specs:
            row = rows[key]
            if row.error:
                continue
            step = f"landing {size}: {label}{of}"
            result = _measure(row, lambda kind=kind, spec=spec, step=step: runner.run(kind, spec, step))
            for leftover in (spec.get("warehouse"), spec.get("database")):
                if leftover and not (keep and round_ == rounds):
                    shutil.rmtree(leftover, ignore_errors=True)
                    with contextlib.suppress(OSError):
                        os.remove(leftover)
            if result:
                results[key].append(result)
    for key, _, _, _ in specs:
        row, runs = rows[key], results[key]
        if row.error or not runs:
            continue
        result = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]
        info["engine_version"] = info["engine_version"] or result.get("engine_version")
        row.value = result["lines"] / result["seconds"]
        row.detail = {"size": size, "files": result.get("files", globbed), "lines": result["lines"],
                      "seconds": round(result["seconds"], 3),
                      "peak_rss_gb": round(result["peak_rss_bytes"] / GB, 2)}
        if len(runs) > 1:
            row.detail["runs"] = [round(r["seconds"], 3) for r in runs]
        if problem := next(filter(None, (
                _unlike_dataset(dataset, r.get("files", globbed), r["lines"], want_files, want_lines)
                for r in runs)), None):
            row.value, row.error = None, problem
        for extra in ("rejected", "max_threads", "threads", "row_numbers_exact", "parts", "inserts"):
            if extra in result:
                value = result[extra]
                row.detail[extra] = round(value, 3) if isinstance(value, float) else value
        if any(r.get("row_numbers_exact") is False for r in runs):
            row.detail["row_numbers_exact"] = False
            row.value, row.error = None, ("landed rows whose `_row_number` does not run 1..rows in every file: "
                                          "the loader's lineage is wrong, so its time is no figure")
    return list(rows.values())


def _postgres_row(runner: Runner, dataset: Dataset, scale: Scale, enabled: bool, info: dict[str, Any],
                  log: Callable[[str], None]) -> Row:
    row = Row(id="landing.pandas_postgres.sample", group="landing", unit="lines/s",
              label="pandas read_csv + to_sql into PostgreSQL (a sample)")
    if not enabled:
        row.skipped = "skipped: --no-postgres"
        return row
    sample, lines = [], 0
    for day in sorted(dataset.order_item_files):
        for relative in dataset.order_item_files[day]:
            if lines >= scale.pg_sample_lines:
                break
            sample.append(str(landing_dir(dataset, FACTOR) / relative))
            lines += dataset.lines_by_day[day] // max(1, len(dataset.order_item_files[day]))
    row.label = f"pandas read_csv + to_sql into PostgreSQL (sample: first {len(sample)} files)"
    try:
        with postgres_cluster(log) as (dsn, version):
            info["postgresql"] = version
            result = _measure(row, lambda: runner.run("pandas_postgres", {"dsn": dsn, "files": sample},
                                                      "landing sample: pandas to_sql into PostgreSQL"))
    except PostgresUnavailable as exc:
        row.skipped = f"skipped: {exc}"
        return row
    except (OSError, subprocess.SubprocessError) as exc:
        row.skipped = f"skipped: PostgreSQL could not be started ({exc})"
        return row
    if result:
        row.value = result["lines"] / result["seconds"]
        row.detail = {"size": "sample", "files": len(sample), "lines": result["lines"],
                      "seconds": round(result["seconds"], 3), "peak_rss_gb": round(result["peak_rss_bytes"] / GB, 2)}
    return row


def _pipeline_rows(runner: Runner, dataset: Dataset, run_dir: Path, keep: bool) -> list[Row]:
    """Full refresh and one more day at 1x and 10x history, on one warehouse path reused in turn
    (so dbt's partial parse stays warm, as it is for `ecom run` in a checkout). With `keep`, each
    history's warehouse is moved to `warehouse-1x` and `warehouse-10x` after its one more day."""
    warehouse, target, dbt_logs = run_dir / "warehouse", run_dir / "target", run_dir / "dbt-logs"
    env = {"ECOM_CHDB_PATH": str(warehouse), "DBT_TARGET": "dev"}
    root = project_dir()
    subprocess.run([dbt_executable(), "parse", "--project-dir", str(root),
                    "--profiles-dir", str(root), "--target", "dev", "--target-path", str(target),
                    "--log-path", str(dbt_logs)],
                   env={**os.environ, **env}, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    rows: list[Row] = []
    days: dict[str, Row] = {}
    for factor in (1, FACTOR):
        size = f"{factor}x"
        shutil.rmtree(warehouse, ignore_errors=True)
        end, added = dataset.history_end(factor), dataset.added_day(factor)
        common = {"raw_dir": str(dataset.raw_dir), "warehouse": str(warehouse), "run_dir": str(run_dir),
                  "target_path": str(target), "log_path": str(dbt_logs)}
        lines = dataset.lines(dataset.origin, end)
        full = Row(id=f"full_refresh.{size}", group="full_refresh", unit="s",
                   label=f"full refresh raw to gold, {size} history ({factor * dataset.days_1x} days)")
        result = _measure(full, lambda common=common, end=end, size=size, lines=lines: runner.run(
            "pipeline", {**common, "start": None, "end": end.isoformat(), "full_refresh": True},
            f"full refresh {size}: ecom load + dbt build --full-refresh ({lines:,} order lines)", env))
        if result:
            _pipeline_detail(full, result, dataset, dataset.origin, end)
        rows.append(full)
        day = Row(id=f"one_more_day.{size}", group="one_more_day", unit="s",
                  label=f"one more day ({added}) on {size} history")
        if full.error is None:
            result = _measure(day, lambda common=common, added=added, size=size: runner.run(
                "pipeline", {**common, "start": added.isoformat(), "end": added.isoformat(), "full_refresh": False},
                f"one more day on {size} history: ecom load --date + dbt build", env))
            if result:
                _pipeline_detail(day, result, dataset, added, added)
        else:
            day.skipped = f"skipped: the {size} history did not build (see the full refresh row)"
        rows.append(day)
        days[size] = day
        if keep and warehouse.exists():  # run_dir is new for each run
            warehouse.rename(run_dir / f"warehouse-{size}")
    shutil.rmtree(warehouse, ignore_errors=True)
    ratio = Row(id="one_more_day.ratio", group="one_more_day", unit="x",
                label=f"one more day: {FACTOR}x history / 1x history (wall time)")
    small, big = days["1x"], days[f"{FACTOR}x"]
    if small.value and big.value:
        ratio.value = big.value / small.value
        read_small = (small.detail.get("query_log") or {}).get("read_rows")
        read_big = (big.detail.get("query_log") or {}).get("read_rows")
        ratio.detail = {"rows_read_ratio": round(read_big / read_small, 2) if read_small and read_big else None,
                        "dbt_seconds_ratio": round(big.detail["dbt_seconds"] / small.detail["dbt_seconds"], 2)}
    else:
        ratio.skipped = "skipped: a one-more-day run is missing"
    rows.append(ratio)
    return rows


def _pipeline_detail(row: Row, result: dict[str, Any], dataset: Dataset, first: date, last: date) -> None:
    lines, files = dataset.lines(first, last), dataset.files(first, last)
    row.value = result["seconds"]
    statuses = result.get("dbt_statuses", {})
    problems = {k: v for k, v in statuses.items() if k in ("error", "fail", "skipped", "runtime error")}
    row.detail = {
        "order_lines": lines,
        "raw_files": files,
        "files_landed": result["files_landed"],
        "files_rejected": result["files_rejected"],
        "rows_landed": result["rows_landed"],
        "order_lines_landed": result["order_lines_landed"],
        # Also kept when the row has no figure: how long a failed build ran.
        "seconds": round(result["seconds"], 2),
        "load_seconds": round(result["load_seconds"], 2),
        "dbt_seconds": round(result["dbt_seconds"], 2),
        "peak_rss_gb": round(result["peak_rss_bytes"] / GB, 2),
        "cpu_seconds": result.get("cpu_seconds"),
        "dbt_success": result["dbt_success"],
        "dbt_statuses": statuses,
        "dbt_errors": result.get("dbt_errors", []),
        "layers": {name: {k: round(v, 2) for k, v in entry.items()} for name, entry in result["layers"].items()},
        "query_log": result.get("query_log"),
    }
    if result.get("query_log_note"):
        row.detail["query_log_note"] = result["query_log_note"]
    if problems:
        row.detail["note"] = "dbt build did not pass: " + ", ".join(f"{v} {k}" for k, v in sorted(problems.items()))
    if problem := _unlike_dataset(dataset, result["files_seen"], result["order_lines_landed"], files, lines):
        row.value, row.error = None, problem
        row.detail["failure"] = "landed other data than the dataset lists"
    elif not result["dbt_success"]:
        # A build that stopped early would time less than the work: no figure.
        row.value, row.error = None, (f"dbt build failed ({row.detail.get('note', 'see its log')}); first error: "
                                      + (result.get("dbt_errors") or ["none reported"])[0])


def _row(rows: list[Row], row_id: str) -> Row | None:
    return next((r for r in rows if r.id == row_id), None)


def evaluate_targets(rows: list[Row], scale: Scale) -> list[Target]:
    """SPEC section 8, one line each: measured, met or not, and the gap."""
    big = f"{FACTOR}x"
    loader, ceiling, duck = (_row(rows, f"landing.{k}.{big}") for k in ("ecom_load", "engine_ceiling", "duckdb"))
    full_big, full_small = _row(rows, f"full_refresh.{big}"), _row(rows, "full_refresh.1x")
    day_small, day_big = _row(rows, "one_more_day.1x"), _row(rows, f"one_more_day.{big}")
    ratio = _row(rows, "one_more_day.ratio")
    targets = []

    def add(target: str, ok: bool | None, measured: str, gap: str = "") -> None:
        targets.append(Target(target, measured, ok, "" if ok else gap))

    if loader and loader.value:
        add("landing >= 3,000,000 order lines/s", loader.value >= 3e6, f"{loader.value:,.0f} lines/s",
            f"{3e6 / loader.value:.2f}x too slow")
        if ceiling and ceiling.value:
            slower = ceiling.value / loader.value
            add("landing within 1.5x of the engine's INSERT ... SELECT FROM file()", slower <= 1.5,
                f"ceiling {ceiling.value:,.0f} lines/s = {slower:.2f}x the loader", f"{slower / 1.5:.2f}x beyond 1.5x")
        if duck and duck.value:
            add("landing no slower than DuckDB read_csv", loader.value >= duck.value,
                f"DuckDB {duck.value:,.0f} lines/s = {duck.value / loader.value:.2f}x the loader",
                f"{duck.value / loader.value:.2f}x slower")
    if full_big and full_big.error and full_big.detail.get("dbt_success") is False:
        add("full refresh under 60 s", False, f"dbt build failed after {full_big.detail['seconds']:,.0f} s",
            "it fails")
    elif full_big and full_big.error:  # no figure to hold against the target
        add("full refresh under 60 s", None,
            full_big.detail.get("failure") or f"step {_how_it_ended(full_big.detail.get('exit_code'))}")
    elif full_big and full_big.value:
        add(f"full refresh of {full_big.detail['order_lines']:,} order lines under 60 s", full_big.value < 60,
            f"{full_big.value:,.2f} s (landing {full_big.detail['load_seconds']:,.1f} s, "
            f"dbt {full_big.detail['dbt_seconds']:,.1f} s)", f"{full_big.value / 60:.2f}x over")
    runs = [r for r in rows if r.group in ("full_refresh", "one_more_day") and r.unit == "s"]
    peaks = [r.detail["peak_rss_gb"] for r in runs if r.error is None and "peak_rss_gb" in r.detail]
    if not peaks:
        add("peak memory under 8 GB", None, "not measured: no pipeline run gave a figure")
    elif max(peaks) >= 8 or len(peaks) == len(runs):
        add("peak memory under 8 GB", max(peaks) < 8, f"{max(peaks):.2f} GB", f"{max(peaks) / 8:.2f}x over")
    else:  # under 8 GB so far, but a run that did not finish may have gone over
        add("peak memory under 8 GB", None, f"{max(peaks):.2f} GB in the {len(peaks)} of {len(runs)} runs that "
            "finished")
    for day, full, size in ((day_small, full_small, "1x"), (day_big, full_big, big)):
        if day and day.value and full and full.value:
            share = day.value / full.value
            add(f"one more day on {size} history under 10% of its full refresh", share < 0.10,
                f"{day.value:,.1f} s = {share:.1%} of {full.value:,.1f} s", f"{share / 0.10:.2f}x over")
    if ratio and ratio.value:
        add(f"one more day grows less than 1.5x from 1x to {big} history", ratio.value < 1.5,
            f"{ratio.value:.2f}x" + (f" (rows read {ratio.detail['rows_read_ratio']}x)"
                                      if ratio.detail.get("rows_read_ratio") else ""),
            f"{ratio.value / 1.5:.2f}x beyond 1.5x")
    if scale.name != "full":
        for t in targets:
            t.target += f" [{scale.name} sizes, not the spec's]"
    return targets


# ---------------------------------------------------------------------------------------------
# The table


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if digits else f"{value:,.0f}"


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        cells = zip(values, widths, strict=True)
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(cells)).rstrip()

    return [line(columns), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def render(figures: dict[str, Any]) -> str:
    """The figures as plain-text tables (what `ecom bench` prints)."""
    m, v, d = figures["machine"], figures["versions"], figures["dataset"]
    rows = [Row(**r) for r in figures["rows"]]
    out = [
        f"ecom bench ({figures['scale']}) {figures['date']}: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, "
        f"load average {m['load_average_at_start'][0]} at start, {m.get('load_average_at_end', ['?'])[0]} at end",
        f"chdb {v.get('chdb')} (engine {v.get('clickhouse engine')}), duckdb {v.get('duckdb')}, "
        f"dbt-core {v.get('dbt-core')} + dbt-clickhouse {v.get('dbt-clickhouse')}, pandas {v.get('pandas')}, "
        f"{v.get('postgresql')}",
        f"world: {d['orders_per_day']} orders/day from {d['origin']}; 1x = {d['days_1x']} days, {d['lines_1x']:,} "
        f"order lines, {d['files_1x']:,} files; 10x = {d['days_10x']} days, {d['lines_10x']:,} lines, "
        f"{d['files_10x']:,} files",
        "",
        "Landing order_items files (order lines per second; higher is better)",
    ]

    def why(row: Row) -> str:
        return row.skipped or f"error: {row.error}"

    table = []
    for r in (r for r in rows if r.group == "landing"):
        size = r.detail.get("size", r.id.rsplit(".", 1)[-1])
        if r.value is None:
            table.append([r.label, size, "-", "-", "-", "-", why(r)])
            continue
        note = []
        if runs := r.detail.get("runs"):
            note.append(f"median of {len(runs)}: {min(runs):.2f}-{max(runs):.2f} s")
        if "inserts" in r.detail:
            note.append(f"{r.detail['inserts']} INSERT{'' if r.detail['inserts'] == 1 else 's'}")
        table.append([r.label, size, _fmt(r.detail["files"], 0), _fmt(r.detail["lines"], 0),
                      _fmt(r.detail["seconds"], 3), _fmt(r.value, 0), "; ".join(note)])
    out += _table(["contender", "size", "files", "lines", "s", "lines/s", "note"], table)

    out += ["", "Full refresh raw to gold and one more day (ecom load + dbt build; seconds)"]
    runs = [r for r in rows if r.group in ("full_refresh", "one_more_day") and r.unit == "s"]
    columns = ["run", "order lines", "raw files", "wall", "landing", "dbt", "peak GB", "CPU s", "engine CPU s",
               "rows read"]
    table, notes = [], []
    for r in runs:
        if r.error and r.value is not None:
            notes.append(f"{r.label}: {r.error}")
        if r.value is None:
            table.append([r.label, *["-"] * (len(columns) - 1)])
            notes.append(f"{r.label}: {why(r)}")
            continue
        log = r.detail.get("query_log") or {}
        read, engine_cpu = log.get("read_rows"), log.get("engine_cpu_seconds")
        table.append([r.label, _fmt(r.detail["order_lines"], 0), _fmt(r.detail["raw_files"], 0), _fmt(r.value),
                      _fmt(r.detail["load_seconds"]), _fmt(r.detail["dbt_seconds"]), f"{r.detail['peak_rss_gb']:.2f}",
                      _fmt(r.detail.get("cpu_seconds")), _fmt(engine_cpu),
                      _fmt(read, 0) if read is not None else "n/a"])
        notes += [f"{r.label}: {r.detail[k]}" for k in ("note", "query_log_note") if r.detail.get(k)]
    out += _table(columns, table)
    out.append("CPU s: the run's process, user + system (the engine's statements and dbt's Python); engine CPU s: "
               "the statements alone, from the query log")
    layers = sorted({name for r in runs if r.value for name, e in r.detail.get("layers", {}).items() if e["nodes"]},
                    key=lambda n: (LAYER_ORDER.index(n) if n in LAYER_ORDER else len(LAYER_ORDER), n))
    if layers:
        out += ["", "dbt time per layer, models+tests (busy seconds of dbt's threads, so they add up to more "
                "than the dbt wall time)"]
        table = []
        for r in (r for r in runs if r.value):
            entries = r.detail.get("layers", {})
            table.append([r.label, *(f"{entries[n]['build_seconds']:.1f}+{entries[n]['tests_seconds']:.1f}"
                                     if n in entries else "-" for n in layers)])
        out += _table(["run", *layers], table)
    out += notes
    small, big = _row(rows, "one_more_day.1x"), _row(rows, f"one_more_day.{FACTOR}x")
    if small and big and small.value and big.value and (big.detail.get("query_log") or {}).get("by_node"):
        before = {n["node"]: n for n in (small.detail.get("query_log") or {}).get("by_node", [])}
        out += ["", f"Where one more day goes (query log: engine CPU seconds and rows read per dbt node, "
                f"{FACTOR}x vs 1x)"]
        table = []
        for n in big.detail["query_log"]["by_node"][:15]:
            old = before.get(n["node"], {})
            table.append([n["node"].replace("model.ecom.", "").replace("test.ecom.", "test ")[:70],
                          _fmt(n.get("cpu_seconds")), _fmt(old.get("cpu_seconds")), _fmt(n["read_rows"], 0),
                          _fmt(old.get("read_rows"), 0)])
        out += _table(["node", f"CPU s {FACTOR}x", "CPU s 1x", f"rows read {FACTOR}x", "rows read 1x"], table)
    ratio = _row(rows, "one_more_day.ratio")
    if ratio:
        out.append("one more day, 10x / 1x history: "
                   + (f"{ratio.value:.2f}x wall, {ratio.detail.get('dbt_seconds_ratio')}x dbt, "
                      f"{ratio.detail.get('rows_read_ratio')}x rows read" if ratio.value else why(ratio)))

    out += ["", "Targets (SPEC section 8)"]
    out += _table(["target", "measured", "met"],
                  [[t["target"], t["measured"], {True: "yes", False: "NO", None: "?"}[t["met"]]]
                   for t in figures["targets"]])
    return "\n".join(out)


def _unusable(option: str, path: Path, folder: Path) -> str | None:
    """Why `folder` (made if missing) cannot hold `path` of `option`, in one line; None if it can.
    (click already refuses a --json that is a folder and a --cache-dir that is a file.)"""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # mkdir says "File exists" or "Not a directory" of a file where a folder of the path should be.
        try:
            blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        except OSError:  # a name too long: exc says so
            blocker = None
        if blocker is not None and not blocker.is_dir():
            return f"cannot use {option} {path}: {blocker} is a file, not a folder; choose another path"
        return f"cannot use {option} {path}: {exc.strerror or exc}; choose another path or check its permissions"
    try:  # a folder that is there but cannot be written (its permissions, a read-only file system)
        tempfile.TemporaryFile(dir=folder).close()
        if path != folder and path.exists():  # a file the run would replace, opened without a change
            open(path, "r+b").close()
    except OSError as exc:
        where = "" if exc.filename == str(path) else f" in {folder}"
        return f"cannot use {option} {path}: {exc.strerror or exc}{where}; choose another path or check its " \
               "permissions"
    return None


def main(scale: Scale, cache_dir: Path, json_path: Path | None, postgres: bool, keep: bool,
         out: TextIO | None = None) -> int:
    import click

    # A plain `kill` ends the measurement running in a child too (Runner.run stops it on the way out).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if scale.days_1x % 7:  # weekday demand differs by up to 40%: the ratio would compare two kinds of day
        raise click.BadParameter(f"{scale.days_1x} is not a multiple of 7, so the days added to the 1x and 10x "
                                 "histories would fall on different weekdays", param_hint="'--days'")
    # The generator's bounds, before the lock and the cache are touched.
    from ecom.generate import MAX_WORLD_ORDERS

    if unloadable_days(ORIGIN, scale.days_total):
        most = (LAST_DAY - ORIGIN).days // FACTOR // 7 * 7
        raise click.BadParameter(f"{scale.days_1x:,} days of 1x history make a world of {scale.days_total:,} days "
                                 f"from {ORIGIN}, past {LAST_DAY}, the last day the pipeline can load; give at most "
                                 f"{most:,}", param_hint="'--days'")
    if scale.orders_per_day > MAX_ORDERS_PER_DAY:
        raise click.BadParameter(f"{scale.lines:,} order lines over {FACTOR * scale.days_1x:,} days of 10x history "
                                 f"need {scale.orders_per_day:,} orders a day, more than the generator's "
                                 f"{MAX_ORDERS_PER_DAY:,}; give fewer --lines or more --days", param_hint="'--lines'")
    if (orders := scale.orders_per_day * scale.days_total) > MAX_WORLD_ORDERS:
        raise click.BadParameter(f"{scale.lines:,} order lines make a world of {orders:,} orders, more than the "
                                 f"{MAX_WORLD_ORDERS:,} the generator holds in memory; give fewer --lines",
                                 param_hint="'--lines'")
    # Both paths are checked before the run, which takes minutes, rather than after it.
    problem = _unusable("--cache-dir (or ECOM_BENCH_DIR)", cache_dir, cache_dir)
    if json_path is not None:
        problem = problem or _unusable("--json", json_path, json_path.parent)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    # One run per cache folder: a second would delete the first's run/ folder under it. The lock
    # goes with the file's descriptor: released when the run ends, however it ends.
    try:
        lock = open(cache_dir / LOCK_FILE, "a+")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:  # a lock file left by another user, say
        print(f"error: cannot use --cache-dir (or ECOM_BENCH_DIR) {cache_dir}: {exc.strerror or exc} on its "
              f"{LOCK_FILE}; choose another path or check its permissions", file=sys.stderr)
        return 1
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip()
            print(f"error: another ecom bench{f' (process {holder})' if holder.isdigit() else ''} is using "
                  f"{cache_dir}; wait for it to finish or give this run another --cache-dir", file=sys.stderr)
            return 1
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        figures = run_bench(scale, cache_dir, postgres=postgres, keep=keep)
    print(render(figures), file=out or sys.stdout, flush=True)  # first: a JSON that cannot be written loses nothing
    failed = any(r["error"] for r in figures["rows"])
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        except OSError as exc:
            print(f"error: cannot write --json {json_path}: {exc.strerror or exc}; the table above holds the figures",
                  file=sys.stderr)
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(child_main(sys.argv[1:]))
