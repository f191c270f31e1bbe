"""Crash trials: kill `ecom load` and `ecom run` with SIGKILL at seeded random points, run them
again, and compare every bronze, silver and gold table with a clean run of the same files.

    python -m ecom.soak --trials 50 --seed 7 --report RELIABILITY-figures.json

One small generated world is landed and built twice without faults first: once from an empty
warehouse (`fresh`) and once on top of a warehouse that already holds all days but the last
(`incremental`, so the delete+insert paths of the incremental models run). Each trial then
starts from one of those two states, injects one fault, lets `ecom run` finish and compares
the result with the clean run of the same start. The faults:

- `load`: SIGKILL `ecom load` after a random delay within a clean load's duration;
- `run`: SIGKILL `ecom run` (the CLI and its dbt child) anywhere within a clean run's duration;
- `dbt`: the same, aimed at the dbt phase of the run;
- `twice`: kill `ecom run`, then kill the run that recovers from it, then run to the end;
- `parent`: SIGKILL only the `ecom run` process while dbt runs; dbt carries on alone and the
  next `ecom run --wait` must wait for it instead of landing or building beside it;
- `delete_insert`: make the insert step of one delete+insert model fail after its delete has
  run (a CHECK constraint that no row passes), the state a kill between the two statements
  leaves, then remove the constraint and run again;
- `partial_insert`: SIGKILL in the middle of the INSERT of one incremental model, slowed down
  by a CHECK constraint that sleeps 10 ms a row. With the default block sizes a small world
  inserts one part per model, which the kill stops before it is written; with
  `--small-insert-blocks` every INSERT writes 64-row parts, as an INSERT of millions of rows
  writes parts of about a million, and the parts written before the kill stay.

A table matches when it has the same rows as in the clean run: a multiset of per-row hashes
over every column except those that differ between any two runs (`_batch_id`, `_ingested_at`,
and the ingest log's batch ids and timestamps). Rows in the clean run and not after the trial
are lost, extra copies of clean rows are doubled, other rows are unexpected.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ecom.config import Settings, project_dir
from ecom.lock import ensure_unlocked
from ecom.warehouse import session

LAYERS = ("bronze", "silver", "gold")
# Columns whose values differ between two clean runs of the same files.
VOLATILE_COLUMNS = frozenset({"_batch_id", "_ingested_at"})
VOLATILE_BY_TABLE = {"bronze.ingest_log": frozenset({"batch_id", "started_at", "finished_at"})}
# Work tables dbt-clickhouse creates inside one model's run; a kill can leave them behind.
STAGING_TABLE = re.compile(r"__dbt_(new_data|distributed_new_data|tmp|backup)")
KINDS = ("load", "run", "dbt", "delete_insert", "run", "dbt", "parent", "load", "dbt", "twice", "partial_insert")
FAULT_CONSTRAINT = "ecom_soak_fault"


# ---------------------------------------------------------------------------------------------
# Comparing warehouses


Snapshot = dict[str, Counter]  # "database.table" -> multiset of row hashes


def snapshot(chdb_path: Path, layers: tuple[str, ...] = LAYERS) -> Snapshot:
    """Every MergeTree table of `layers` as a multiset of row hashes (volatile columns left out)."""
    tables: Snapshot = {}
    with session(Settings(chdb_path=chdb_path)) as client:
        names = client.query(
            "SELECT database, name FROM system.tables WHERE database IN {layers:Array(String)} "
            "AND engine LIKE '%MergeTree' ORDER BY database, name",
            parameters={"layers": list(layers)},
        ).result_rows
        for database, table in names:
            qualified = f"{database}.{table}"
            skip = VOLATILE_COLUMNS | VOLATILE_BY_TABLE.get(qualified, frozenset())
            columns = [
                name for (name,) in client.query(
                    "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String} "
                    "ORDER BY position", parameters={"d": database, "t": table},
                ).result_rows if name not in skip
            ]
            tuple_sql = ", ".join(_quote(c) for c in columns)
            rows = client.query(
                f"SELECT cityHash64(tuple({tuple_sql})) AS h, count() FROM {_quote(database)}.{_quote(table)} "
                "GROUP BY h"
            ).result_rows
            tables[qualified] = Counter(dict(rows))
    return tables


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass
class Comparison:
    tables: int = 0
    rows: int = 0
    rows_lost: int = 0
    rows_doubled: int = 0
    rows_unexpected: int = 0
    tables_missing: list[str] = field(default_factory=list)
    tables_extra: list[str] = field(default_factory=list)
    stale_staging_tables: list[str] = field(default_factory=list)
    tables_differing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.rows_lost or self.rows_doubled or self.rows_unexpected or self.tables_missing
                    or self.tables_extra or self.tables_differing)


def compare(reference: Snapshot, got: Snapshot) -> Comparison:
    """What differs between a clean run and a run after a fault, row by row."""
    result = Comparison(tables=len(reference), rows=sum(sum(t.values()) for t in reference.values()))
    for name, rows in reference.items():
        if name not in got:
            result.tables_missing.append(name)
            result.rows_lost += sum(rows.values())
            continue
        after = got[name]
        lost = sum((rows - after).values())
        surplus = after - rows
        doubled = sum(n for h, n in surplus.items() if h in rows)
        unexpected = sum(n for h, n in surplus.items() if h not in rows)
        result.rows_lost += lost
        result.rows_doubled += doubled
        result.rows_unexpected += unexpected
        if lost or doubled or unexpected:
            result.tables_differing.append(name)
    for name in sorted(set(got) - set(reference)):
        (result.stale_staging_tables if STAGING_TABLE.search(name) else result.tables_extra).append(name)
    return result


# ---------------------------------------------------------------------------------------------
# Running the CLI


def ecom_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("ecom")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "ecom.cli", *args]


@dataclass
class Outcome:
    returncode: int | None  # None: killed
    seconds: float
    stdout: str
    stderr: str
    pid: int = 0


@dataclass
class Workspace:
    """One generated world (raw files, read only) and the directories of the runs on it."""

    root: Path
    raw_dir: Path
    start: date
    days: int
    project: Path  # a frozen copy of the dbt project: edits made meanwhile cannot mix into a result

    @property
    def last_day(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    def env(self, warehouse: Path, logs: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "ECOM_", "DBT_"))}
        env.update(
            ECOM_RAW_DIR=str(self.raw_dir),
            ECOM_CHDB_PATH=str(warehouse),
            DBT_TARGET="dev",
            # dbt reparses less when every run of the workspace shares one target directory;
            # runs are never concurrent here except in the `parent` trial, which waits.
            DBT_TARGET_PATH=str(self.root / "dbt-target"),
            DBT_LOG_PATH=str(logs or self.root / "dbt-logs"),
            ECOM_PROJECT_DIR=str(self.project),
        )
        return env

    def run(self, args: list[str], warehouse: Path, *, logs: Path | None = None, timeout: float = 1800,
            expect: tuple[int, ...] = (0,)) -> Outcome:
        """Run `ecom <args>` to the end; fail loudly on an unexpected exit status."""
        started = time.monotonic()
        proc = subprocess.run(ecom_command(*args), env=self.env(warehouse, logs), cwd=self.project,
                              capture_output=True, text=True, timeout=timeout)
        outcome = Outcome(proc.returncode, time.monotonic() - started, proc.stdout, proc.stderr)
        if expect and proc.returncode not in expect:
            failures = [line.strip() for line in proc.stderr.splitlines()
                        if re.search(r"(Failure|Error) in (test|model|seed)|^error:|Traceback|Exception", line)]
            raise RuntimeError(f"ecom {' '.join(args)} exited {proc.returncode} (expected {expect}): "
                               + "; ".join(dict.fromkeys(failures)) + f"\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
        return outcome

    def run_and_kill(self, args: list[str], warehouse: Path, delay: float, *, logs: Path,
                     whole_group: bool = True, after_dbt_starts: bool = False,
                     after_statement: str | None = None) -> Outcome:
        """Start `ecom <args>` and SIGKILL it `delay` seconds later: the CLI and its dbt child, or the
        CLI alone with `whole_group=False`. The delay counts from the start, or from dbt's first log
        line (`after_dbt_starts`), or from the moment dbt logs a statement holding `after_statement`.
        returncode None: killed; else it ended first."""
        logs.mkdir(parents=True, exist_ok=True)
        out, err = logs / "ecom.stdout", logs / "ecom.stderr"
        started = time.monotonic()
        with open(out, "w") as stdout, open(err, "w") as stderr:
            proc = subprocess.Popen(ecom_command(*args), env=self.env(warehouse, logs), cwd=self.project,
                                    stdout=stdout, stderr=stderr, start_new_session=True)
            if after_dbt_starts or after_statement:
                _wait_for_dbt_log(logs / "dbt.log", after_statement, proc)
            try:
                returncode: int | None = proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                if whole_group:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
                proc.wait()
                returncode = None
        seconds = time.monotonic() - started
        if whole_group:
            ensure_unlocked(warehouse, wait_seconds=60)  # the kernel drops a dead process's locks
        return Outcome(returncode, seconds, out.read_text(errors="replace"), err.read_text(errors="replace"),
                       pid=proc.pid)


def _wait_for_dbt_log(log: Path, text: str | None, proc: subprocess.Popen) -> None:
    """Until dbt's log exists (and holds `text`), or the process has ended."""
    offset, tail = 0, ""
    while proc.poll() is None:
        if log.exists():
            if not text:
                return
            with open(log, errors="replace") as handle:
                handle.seek(offset)
                chunk = handle.read()
                offset = handle.tell()
            if text in tail + chunk:
                return
            tail = chunk[-len(text):]
        time.sleep(0.01)


def _landed_summary(stdout: str) -> tuple[int, int]:
    """(files landed, orphan rows removed) from `ecom load`'s summary."""
    landed = re.search(r"landed (\d+) files?\b", stdout)
    removed = re.search(r"removed ([\d,]+) rows of an interrupted earlier load", stdout)
    return (int(landed.group(1)) if landed else 0,
            int(removed.group(1).replace(",", "")) if removed else 0)


def dbt_progress(logs: Path) -> tuple[bool, list[str], list[str]]:
    """(dbt started, nodes finished, nodes running) according to the dbt log of one run."""
    log = logs / "dbt.log"
    if not log.exists():
        return False, [], []
    began, finished = [], set()
    for line in log.read_text(errors="replace").splitlines():
        if match := re.search(r"Began running node (\S+)", line):
            began.append(match.group(1))
        elif match := re.search(r"Finished running node (\S+)", line):
            finished.add(match.group(1))
    return True, [n for n in began if n in finished], [n for n in began if n not in finished]


def _short(node: str) -> str:
    """`model.ecom.orders` -> `model orders`."""
    kind, _, name = node.split(".", 2)
    return f"{kind} {name}"


# ---------------------------------------------------------------------------------------------
# The clean runs every trial is compared with


@dataclass
class Baseline:
    """A warehouse state trials start from, and the clean run from it."""

    name: str  # fresh | incremental
    template: Path | None  # warehouse to copy first (None: empty)
    reference: Snapshot
    run_seconds: float  # clean `ecom run` from this state
    load_begin: float  # seconds from its start to its first ingest-log row
    load_end: float  # ... to its last
    dbt_begin: float  # ... to dbt's first log line
    files: int = 0  # raw files its run lands
    load_only: tuple[float, float] = (0.0, 0.0)  # load phase of a clean `ecom load` from this state
    after: Path | None = None  # the warehouse its clean run left, when prepare kept it

    def prepare(self, warehouse: Path) -> None:
        if warehouse.exists():
            shutil.rmtree(warehouse)
        if self.template is not None:
            shutil.copytree(self.template, warehouse, symlinks=True)


def _load_phase(warehouse: Path, started_at: datetime, total: float) -> tuple[float, float]:
    """Seconds from the start of a run to its first and to its last ingest-log row (the engine
    and this process read the same clock)."""
    with session(Settings(chdb_path=warehouse)) as client:
        first, last = client.query(
            "SELECT toUnixTimestamp64Milli(min(started_at)), toUnixTimestamp64Milli(max(finished_at)) "
            "FROM bronze.ingest_log WHERE started_at >= {t:DateTime64(3, 'UTC')}",
            parameters={"t": started_at.replace(tzinfo=None)},
        ).result_rows[0]
    if not last:
        return 0.0, 0.0
    begin, end = (int(v) / 1000 - started_at.timestamp() for v in (first, last))
    return min(max(begin, 0.0), total), min(max(end, 0.0), total)


def _dbt_begin(logs: Path, started_at: datetime) -> float:
    """Seconds from `started_at` to the first line of a dbt log (its header carries the local time)."""
    with open(logs / "dbt.log", errors="replace") as handle:
        head = handle.read(4096)
    match = re.search(r"(\d\d):(\d\d):(\d\d)\.(\d+)", head)
    if not match:
        return 0.0
    local = started_at.astimezone()
    hour, minute, second, fraction = match.groups()
    at = local.replace(hour=int(hour), minute=int(minute), second=int(second),
                       microsecond=int(fraction[:6].ljust(6, "0")))
    if at < local - timedelta(hours=12):  # past midnight
        at += timedelta(days=1)
    return max((at - local).total_seconds(), 0.0)


def _clean_run(space: Workspace, warehouse: Path, args: list[str]) -> tuple[float, float, float, float]:
    """(seconds, load begin, load end, dbt begin) of a clean `ecom <args>`, counted from its start."""
    logs = space.root / "clean-logs"
    if logs.exists():
        shutil.rmtree(logs)
    started_at = datetime.now(UTC)
    outcome = space.run(args, warehouse, logs=logs, expect=(0, 3))
    begin, end = _load_phase(warehouse, started_at, outcome.seconds)
    dbt_begin = _dbt_begin(logs, started_at) if (logs / "dbt.log").exists() else 0.0
    return outcome.seconds, begin, end, dbt_begin


PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "data_tests", "docs",
                 "analyses", "snapshots")


def copy_project(source: Path, dest: Path) -> Path:
    """The files dbt reads, copied once, so every run of a soak builds the same models even while
    someone edits the checkout."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, dest / name)
    return dest


def prepare(root: Path, *, seed: int = 7, days: int = 3, orders_per_day: int = 80,
            start: date = date(2026, 3, 1), fresh: bool = True, incremental: bool = True,
            small_insert_blocks: bool = False, keep_clean_runs: bool = False,
            log=print) -> tuple[Workspace, dict[str, Baseline]]:
    """Generate the world and run it clean from the starting states asked for; with
    `keep_clean_runs`, the warehouses those runs left stay (Baseline.after), to start from."""
    root.mkdir(parents=True, exist_ok=True)
    space = Workspace(root, root / "raw", start, days, copy_project(project_dir(), root / "project"))
    if small_insert_blocks:
        use_small_insert_blocks(space.project)
    space.run(["generate", "--start", start.isoformat(), "--days", str(days), "--orders-per-day",
               str(orders_per_day), "--seed", str(seed), "--quiet", "--out", str(space.raw_dir)], root / "unused")

    baselines: dict[str, Baseline] = {}
    if fresh:
        warehouse = root / "clean-fresh"
        log("clean run from an empty warehouse ...")
        baselines["fresh"] = Baseline("fresh", None, {}, *_clean_run(space, warehouse, ["run", "--quiet"]))
        baselines["fresh"].reference = snapshot(warehouse)
        baselines["fresh"].files = _raw_files(space)
        baselines["fresh"].after = _keep_or_remove(warehouse, root / "after-fresh", keep_clean_runs)
        baselines["fresh"].load_only = _clean_run(space, warehouse, ["load", "--quiet"])[1:3]
        shutil.rmtree(warehouse)

    if incremental and days > 1:
        template = root / "template-incremental"
        before_last = space.last_day - timedelta(days=1)
        log(f"building all days but the last ({start}..{before_last}) ...")
        space.run(["run", "--quiet", "--end", before_last.isoformat()], template, expect=(0, 3))
        warehouse = root / "clean-incremental"
        shutil.copytree(template, warehouse, symlinks=True)
        log("clean incremental run of the last day ...")
        baselines["incremental"] = Baseline("incremental", template, {},
                                            *_clean_run(space, warehouse, ["run", "--quiet"]))
        baselines["incremental"].reference = snapshot(warehouse)
        baselines["incremental"].files = _raw_files(space, space.last_day)
        baselines["incremental"].after = _keep_or_remove(warehouse, root / "after-incremental", keep_clean_runs)
        shutil.copytree(template, warehouse, symlinks=True)
        baselines["incremental"].load_only = _clean_run(space, warehouse, ["load", "--quiet"])[1:3]
        shutil.rmtree(warehouse)
    return space, baselines


def _keep_or_remove(warehouse: Path, kept: Path, keep: bool) -> Path | None:
    if not keep:
        shutil.rmtree(warehouse)
        return None
    if kept.exists():
        shutil.rmtree(kept)
    return warehouse.rename(kept)


def _raw_files(space: Workspace, day: date | None = None) -> int:
    """Raw files of the world (of one day)."""
    return sum(1 for path in space.raw_dir.rglob("*.csv")
               if "_manifest" not in path.parts and (day is None or f"{day:%Y%m%d}" in path.name))


def incremental_models(space: Workspace) -> list[tuple[str, str, str, str]]:
    """(database, table, strategy, unique key) of every incremental model, from dbt's manifest."""
    manifest = json.loads((space.root / "dbt-target" / "manifest.json").read_text())
    found = []
    for node in manifest["nodes"].values():
        config = node.get("config", {})
        if node["resource_type"] == "model" and config.get("materialized") == "incremental":
            key = config.get("unique_key") or ""
            found.append((node["schema"], node["alias"], config.get("incremental_strategy") or "append",
                          ", ".join(key) if isinstance(key, list) else key))
    return sorted(found)


SMALL_INSERT_BLOCKS = {"max_block_size": 64, "min_insert_block_size_rows": 64,
                       "min_insert_block_size_bytes": 0, "max_insert_block_size": 64}


def use_small_insert_blocks(project: Path) -> None:
    """Make every INSERT of dbt write parts of 64 rows, as inserts of millions of rows write parts
    of about a million: an INSERT stopped midway then leaves some of its parts behind."""
    import yaml

    profiles = project / "profiles.yml"
    data = yaml.safe_load(profiles.read_text())
    outputs = [output for profile in data.values() if isinstance(profile, dict)
               for output in profile.get("outputs", {}).values() if output.get("type") == "chdb"]
    if not outputs:
        raise RuntimeError(f"no `type: chdb` output in {profiles}")
    for output in outputs:
        output["custom_settings"] = {**(output.get("custom_settings") or {}), **SMALL_INSERT_BLOCKS}
    profiles.write_text(yaml.safe_dump(data, sort_keys=False))


# ---------------------------------------------------------------------------------------------
# Trials


@dataclass
class Trial:
    number: int
    kind: str
    baseline: str
    delays: list[float] = field(default_factory=list)
    faults: int = 0  # faults that hit a running pipeline
    fault_points: list[str] = field(default_factory=list)
    rerun_seconds: float = 0.0
    orphan_rows_removed: int = 0
    comparison: Comparison = field(default_factory=Comparison)
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.comparison.ok


def fault_point(space_logs: Path, killed: Outcome, rerun: Outcome | None, total_files: int,
                command: str = "run") -> str:
    """Where a SIGKILL of `ecom <command>` landed, from its dbt log and what the next run had to redo."""
    if killed.returncode is not None:
        return "none: the run ended before the kill"
    started, finished, running = dbt_progress(space_logs)
    if started:
        models = [_short(n) for n in running if n.startswith(("model.", "seed."))]
        if models:
            return "dbt: mid-model (" + ", ".join(models) + ")"
        if running:
            return "dbt: mid-test"
        return "dbt: between models" if finished else "dbt: starting (parse, compile)"
    landed_by_rerun, orphans = _landed_summary(rerun.stdout) if rerun else (0, 0)
    if orphans:
        return "load: mid-file"
    if landed_by_rerun >= total_files:
        return "load: before the first file"
    if landed_by_rerun == 0:
        return "between load and dbt (dbt starting)" if command == "run" else "load: after the last file"
    return "load: between files"


class Runner:
    def __init__(self, space: Workspace, baselines: dict[str, Baseline], rng: random.Random, log=print):
        self.space, self.baselines, self.rng, self.log = space, baselines, rng, log
        models = incremental_models(space) if "incremental" in baselines else []
        self.delete_insert_targets = [m for m in models if m[2] == "delete_insert"]
        # insert_overwrite writes a new table and swaps its partitions in (each one atomically):
        # there is no INSERT into the model's table to stop midway.
        self.incremental_targets = [m for m in models if m[2] != "insert_overwrite"]

    def _pick_baseline(self) -> Baseline:
        return self.baselines[self.rng.choice(sorted(self.baselines))]

    def trial(self, number: int, kind: str, baseline: str | None = None) -> Trial:
        base = self.baselines[baseline] if baseline else (
            self.baselines["incremental"] if kind in ("delete_insert", "partial_insert") else self._pick_baseline())
        trial = Trial(number, kind, base.name)
        warehouse = self.space.root / "trial-warehouse"
        logs = self.space.root / "trial-logs"
        started = time.monotonic()
        try:
            if logs.exists():
                shutil.rmtree(logs)
            base.prepare(warehouse)
            getattr(self, f"_{kind}")(trial, base, warehouse, logs)
            trial.comparison = compare(base.reference, snapshot(warehouse))
        except Exception as exc:  # a trial that cannot finish is a failed trial, with its reason
            trial.error = f"{type(exc).__name__}: {exc}"[:2000]
        trial.seconds = round(time.monotonic() - started, 1)
        return trial

    def _kill(self, trial: Trial, args: list[str], warehouse: Path, delay: float, logs: Path,
              whole_group: bool = True, after_dbt_starts: bool = False) -> Outcome:
        delay = round(delay, 3)
        trial.delays.append(delay)
        killed = self.space.run_and_kill(args, warehouse, delay, logs=logs, whole_group=whole_group,
                                         after_dbt_starts=after_dbt_starts)
        trial.faults += killed.returncode is None
        return killed

    def _rerun(self, trial: Trial, warehouse: Path, *extra: str) -> Outcome:
        rerun = self.space.run(["run", "--quiet", *extra], warehouse, expect=(0, 3))
        trial.rerun_seconds += round(rerun.seconds, 1)
        trial.orphan_rows_removed += _landed_summary(rerun.stdout)[1]
        return rerun

    def _load(self, trial: Trial, base: Baseline, warehouse: Path, logs: Path) -> None:
        begin, end = base.load_only
        delay = self.rng.uniform(begin, end)
        killed = self._kill(trial, ["load", "--quiet"], warehouse, delay, logs)
        rerun = self._rerun(trial, warehouse)
        trial.fault_points.append(fault_point(logs, killed, rerun, base.files, command="load"))

    def _run(self, trial: Trial, base: Baseline, warehouse: Path, logs: Path) -> None:
        delay = self.rng.uniform(0.2, base.run_seconds * 0.9)
        killed = self._kill(trial, ["run", "--quiet"], warehouse, delay, logs)
        rerun = self._rerun(trial, warehouse)
        trial.fault_points.append(fault_point(logs, killed, rerun, base.files))

    def _dbt(self, trial: Trial, base: Baseline, warehouse: Path, logs: Path) -> None:
        delay = self.rng.uniform(0, (base.run_seconds - base.dbt_begin) * 0.85)
        killed = self._kill(trial, ["run", "--quiet"], warehouse, delay, logs, after_dbt_starts=True)
        rerun = self._rerun(trial, warehouse)
        trial.fault_points.append(fault_point(logs, killed, rerun, base.files))

    def _twice(self, trial: Trial, base: Baseline, warehouse: Path, logs: Path) -> None:
        first = self._kill(trial, ["run", "--quiet"], warehouse, self.rng.uniform(0.2, base.run_seconds * 0.9),
                           logs / "first")
        second = self._kill(trial, ["run", "--quiet"], warehouse, self.rng.uniform(0.2, base.run_seconds * 0.9),
                            logs / "second")
        rerun = self._rerun(trial, warehouse)
        trial.fault_points.append(fault_point(logs / "first", first, second, base.files))
        trial.fault_points.append(fault_point(logs / "second", second, rerun, base.files))

    def _parent(self, trial: Trial, base: Baseline, warehouse: Path, logs: Path) -> None:
        """Kill only the CLI while dbt runs: the orphaned dbt finishes alone, the next run waits."""
        delay = self.rng.uniform(0, (base.run_seconds - base.dbt_begin) * 0.8)
        killed = self._kill(trial, ["run", "--quiet"], warehouse, delay, logs, whole_group=False,
                            after_dbt_starts=True)
        dbt_started, _finished, running = dbt_progress(logs)
        if killed.returncode is not None:
            trial.fault_points.append("none: the run ended before the kill")
        elif not dbt_started:
            trial.fault_points.append("parent only: before dbt started")
        else:
            trial.fault_points.append(f"parent only: dbt left running ({len(running)} nodes in flight)")
        self._rerun(trial, warehouse, "--wait", "900")
        _reap_group(killed.pid)

    def _delete_insert(self, trial: Trial, base: Baseline, warehouse: Path, logs: Path) -> None:
        database, table, _strategy, key = self.rng.choice(self.delete_insert_targets)
        relation = f"{_quote(database)}.{_quote(table)}"
        with session(Settings(chdb_path=warehouse)) as client:
            before = int(client.command(f"SELECT count() FROM {relation}"))
            client.command(f"ALTER TABLE {relation} ADD CONSTRAINT {FAULT_CONSTRAINT} CHECK 0")
        failed = self.space.run(["run", "--quiet"], warehouse, logs=logs, expect=(1,))
        with session(Settings(chdb_path=warehouse)) as client:
            after = int(client.command(f"SELECT count() FROM {relation}"))
            staged = [name for (name,) in client.query(
                "SELECT name FROM system.tables WHERE database = {d:String} AND startsWith(name, {p:String})",
                parameters={"d": database, "p": f"{table}__dbt_new_data_"}).result_rows]
            missing = 0
            for name in staged:
                missing += int(client.command(
                    f"SELECT count() FROM {_quote(database)}.{_quote(name)} "
                    f"WHERE ({key}) NOT IN (SELECT {key} FROM {relation})"))
            client.command(f"ALTER TABLE {relation} DROP CONSTRAINT {FAULT_CONSTRAINT}")
        if not staged:
            raise RuntimeError(f"the fault in {database}.{table} was not reached:\n{failed.stderr[-2000:]}")
        trial.faults += 1
        trial.fault_points.append(f"dbt: between the delete and the insert of a delete+insert model "
                                  f"({database}.{table}: {before - after} rows deleted, {missing} not inserted)")
        self._rerun(trial, warehouse)

    def _partial_insert(self, trial: Trial, base: Baseline, warehouse: Path, logs: Path) -> None:
        """SIGKILL in the middle of the INSERT of one incremental model. A CHECK constraint that sleeps
        10 ms a row slows the insert down; the kill comes 0.1 to 1.2 s after dbt logs the statement."""
        database, table, strategy, _key = self.rng.choice(self.incremental_targets)
        relation = f"{_quote(database)}.{_quote(table)}"
        with session(Settings(chdb_path=warehouse)) as client:
            before = int(client.command(f"SELECT count() FROM {relation}"))
            client.command(f"ALTER TABLE {relation} ADD CONSTRAINT {FAULT_CONSTRAINT} CHECK sleepEachRow(0.01) = 0")
        delay = round(self.rng.uniform(0.1, 1.2), 3)
        trial.delays.append(delay)
        killed = self.space.run_and_kill(["run", "--quiet"], warehouse, delay, logs=logs,
                                         after_statement=f"insert into {relation}")
        _started, _finished, running = dbt_progress(logs)
        with session(Settings(chdb_path=warehouse)) as client:
            after = int(client.command(f"SELECT count() FROM {relation}"))
            client.command(f"ALTER TABLE {relation} DROP CONSTRAINT {FAULT_CONSTRAINT}")
        node = next((n for n in running if n.endswith(f".{table}")), None)
        if killed.returncode is not None:
            trial.fault_points.append("none: the run ended before the kill")
        else:
            trial.faults += 1
            where = "in the model of the slowed insert" if node else "after the model of the slowed insert"
            trial.fault_points.append(f"dbt: {where} ({database}.{table}, {strategy}, "
                                      f"{after - before:+d} rows in the table)")
        self._rerun(trial, warehouse)


def _reap_group(pgid: int, timeout: float = 900) -> None:
    """Wait for the rest of a process group (an orphaned dbt) to end, then make sure it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if not _group_alive(pgid):
            return
        time.sleep(0.5)
    os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    """True while a process of the group is alive (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def plan(trials: int, rng: random.Random, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """The kinds of `trials` trials: every kind in turn, in a seeded order per round."""
    order: list[str] = []
    while len(order) < trials:
        round_ = list(kinds)
        rng.shuffle(round_)
        order += round_
    return order[:trials]


# ---------------------------------------------------------------------------------------------
# The bad-input corpus (tests/badinput): every case lands or is rejected as its README says


HOSTILE_RAW_NAME = "raw 'x'; DROP TABLE bronze.orders; -- \\ ü"
# Cases whose landed values are the engine's reading, not Python's csv (see the corpus README).
ENGINE_DROPS_SPACES_AFTER_QUOTE = frozenset({"order_items/2026/03/23/order_items_20260323.csv"})
_ITEMS_HEADER = "order_id,line_number,product_id,quantity,unit_price,line_discount\n"


@dataclass(frozen=True)
class Case:
    path: str  # relative to the raw directory, as bronze.ingest_log holds it
    what: str
    expected: str  # "landed N" | "rejected <reason>" | "ignored"
    made_by_test: bool


def read_corpus(corpus: Path) -> list[Case]:
    """The cases of the corpus README's table."""
    cases = []
    for line in (corpus / "README.md").read_text().splitlines():
        match = re.match(r"^\| `(.+?)` \| (.+) \| (.+?) \|$", line)
        if match:
            path, what, expected = match.groups()
            cases.append(Case(path.replace("\\n", "\n"), what, expected, "*made by the test*" in what))
    return cases


def unprivileged_prefix() -> list[str] | None:
    """A command prefix under which file permissions apply: nothing for a normal user; for root,
    `setpriv` without the capabilities that override them; None when that is not available."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"] if setpriv else None


def materialize_corpus(corpus: Path, parent: Path) -> Path:
    """Copy the corpus under a raw directory with a hostile name and add the cases git cannot hold."""
    raw = parent / HOSTILE_RAW_NAME
    shutil.copytree(corpus, raw, symlinks=True, ignore=shutil.ignore_patterns("README.md"))

    def write(relative: str | bytes, data: bytes) -> Path:
        path = Path(os.fsdecode(os.path.join(os.fsencode(raw), os.fsencode(relative))))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    write("order_items/2026/04/03/order_items_20260403.csv",
          (_ITEMS_HEADER + "O-403,1," + "x" * 5_000_000 + ",1,2.00,\n").encode())
    write("order_items/2026/04/04/order_items_20260404.csv", (_ITEMS_HEADER + "O-404,1,P-1,1,2.00,\n").encode())
    write("order_items/2026/04/05/order_items_20260405.csv", (_ITEMS_HEADER + "O-405,1,P-1,1,2.00,\n").encode())
    write(b"order_items/2026/04/06/order_items_20260406_\xe9.csv", (_ITEMS_HEADER + "O-406,1,P,1,2.00,\n").encode())
    write("order_items/2026/04/07/order_items_20260407\n.csv", (_ITEMS_HEADER + "O-407,1,P,1,2.00,\n").encode())
    (raw / "order_items/2026/04/04/order_items_20260404.csv").chmod(0)
    (raw / "order_items/2026/04/05").chmod(0)
    return raw


def restore_permissions(raw: Path) -> None:
    (raw / "order_items/2026/04/05").chmod(0o755)
    (raw / "order_items/2026/04/04/order_items_20260404.csv").chmod(0o644)


@dataclass
class CorpusResult:
    tried: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # "landed", "rejected <reason>", "ignored"
    mismatches: list[str] = field(default_factory=list)
    not_tried: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stderr: str = ""
    files_kept: bool = True


def try_corpus(corpus: Path, root: Path) -> CorpusResult:
    """Land the corpus once with `ecom load` and check every case against its README line."""
    import csv

    result = CorpusResult()
    cases = read_corpus(corpus)
    prefix = unprivileged_prefix()
    permission_cases = {c.path for c in cases if "permission" in c.what}
    if prefix is None:
        result.not_tried = sorted(permission_cases)
    raw = materialize_corpus(corpus, root)
    warehouse = root / "warehouse"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "ECOM_", "DBT_"))}
    env.update(ECOM_RAW_DIR=str(raw), ECOM_CHDB_PATH=str(warehouse), DBT_TARGET="dev",
               ECOM_PROJECT_DIR=str(project_dir()))
    try:
        proc = subprocess.run([*(prefix or []), *ecom_command("load", "--quiet")], env=env, cwd=root,
                              capture_output=True, text=True, timeout=600)
    finally:
        restore_permissions(raw)
    result.exit_code, result.stderr = proc.returncode, proc.stderr
    with session(Settings(chdb_path=warehouse)) as client:
        logged = {path: (status, reason, rows) for path, status, reason, rows in client.query(
            "SELECT file_path, status, reason, rows FROM bronze.ingest_log").result_rows}
        csv.field_size_limit(1 << 30)
        for case in cases:
            if case.path in result.not_tried:
                continue
            result.tried += 1
            status, reason, rows = logged.get(case.path, ("ignored", "", 0))
            got = {"landed": f"landed {rows}", "rejected": f"rejected {reason}"}.get(status, status)
            kind = "landed" if status == "landed" else got
            result.outcomes[kind] = result.outcomes.get(kind, 0) + 1
            if got != case.expected:
                result.mismatches.append(f"{case.path}: expected {case.expected}, got {got}")
                continue
            # `\xNN` in a logged path stands for a byte that is not UTF-8 (see ecom.load._printable).
            path = raw / re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(0xDC00 + int(m.group(1), 16)), case.path)
            if not os.path.lexists(path):
                result.files_kept = False
                result.mismatches.append(f"{case.path}: the file is gone")
            if status == "landed":
                entity = case.path.split("/")[0]
                with open(path, newline="", encoding="utf-8-sig") as handle:
                    expected_rows = [dict(row) for row in csv.DictReader(handle)]
                if case.path in ENGINE_DROPS_SPACES_AFTER_QUOTE:
                    expected_rows = [{k: v.rstrip(" ") for k, v in row.items()} for row in expected_rows]
                columns = list(expected_rows[0]) if expected_rows else []
                landed = [dict(zip(columns, row, strict=True)) for row in client.query(
                    f"SELECT {', '.join(_quote(c) for c in columns) or '1'} FROM bronze.{_quote(entity)} "
                    "WHERE _source_file = {f:String} ORDER BY _row_number", parameters={"f": case.path},
                ).result_rows] if columns else []
                if landed != expected_rows:
                    result.mismatches.append(f"{case.path}: landed values differ from the file")
        unlisted = set(logged) - {c.path for c in cases}
        result.mismatches += [f"{path}: logged but not in the corpus README" for path in sorted(unlisted)]
    return result


# ---------------------------------------------------------------------------------------------
# The report


def summarize(trials: list[Trial], baselines: dict[str, Baseline], space: Workspace, *, seed: int,
              argv: list[str], started_at: datetime, corpus: CorpusResult | None = None,
              small_insert_blocks: bool = False) -> dict:
    points = Counter(p.split(" (")[0] for t in trials for p in t.fault_points)
    comparisons = [t.comparison for t in trials]
    incremental_equals_full = (
        compare(baselines["fresh"].reference, baselines["incremental"].reference).ok
        if {"fresh", "incremental"} <= set(baselines) else None
    )
    bad_inputs = None if corpus is None else {
        "tried": corpus.tried,
        "outcomes": dict(sorted(corpus.outcomes.items())),
        "as_expected": corpus.tried - len(corpus.mismatches),
        "mismatches": corpus.mismatches,
        "not_tried": corpus.not_tried,
        "loader_exit_code": corpus.exit_code,
        "loader_crashed": "Traceback" in corpus.stderr,
        "rejected_files_kept": corpus.files_kept,
    }
    return {
        "command": "python -m ecom.soak " + " ".join(argv),
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "insert_blocks": "64 rows (--small-insert-blocks)" if small_insert_blocks else "engine defaults",
        "world": {"seed": seed, "days": space.days, "start": space.start.isoformat(), "files": _raw_files(space)},
        "clean_runs": {
            name: {"run_seconds": round(b.run_seconds, 1),
                   "load_phase_seconds": [round(b.load_begin, 1), round(b.load_end, 1)],
                   "load_command_phase_seconds": [round(x, 1) for x in b.load_only],
                   "dbt_starts_at_second": round(b.dbt_begin, 1),
                   "tables": len(b.reference), "rows": sum(sum(t.values()) for t in b.reference.values())}
            for name, b in baselines.items()
        },
        "incremental_equals_full_run": incremental_equals_full,
        "trials": len(trials),
        "trials_by_kind": dict(Counter(t.kind for t in trials)),
        "faults_injected": sum(t.faults for t in trials),
        "fault_points": dict(sorted(points.items())),
        "tables_compared": sum(c.tables for c in comparisons),
        "rows_compared": sum(c.rows for c in comparisons),
        "rows_lost": sum(c.rows_lost for c in comparisons),
        "rows_doubled": sum(c.rows_doubled for c in comparisons),
        "rows_unexpected": sum(c.rows_unexpected for c in comparisons),
        "tables_missing": sum(len(c.tables_missing) for c in comparisons),
        "tables_differing": sum(len(c.tables_differing) for c in comparisons),
        "tables_extra": sum(len(c.tables_extra) for c in comparisons),
        "stale_staging_tables": sum(len(c.stale_staging_tables) for c in comparisons),
        "orphan_rows_removed_by_reruns": sum(t.orphan_rows_removed for t in trials),
        "failed_trials": sum(not t.ok for t in trials),
        "bad_inputs": bad_inputs,
        "details": [
            {**{k: v for k, v in asdict(t).items() if k != "comparison"},
             "ok": t.ok,
             "comparison": {k: v for k, v in asdict(t.comparison).items() if v}}
            for t in trials
        ],
    }


@contextmanager
def _workdir(path: Path | None, keep: bool) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="ecom-soak-"))
    try:
        yield tmp
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecom.soak",
        description="Kill `ecom load` and `ecom run` at seeded random points, rerun them, and compare every "
                    "bronze, silver and gold table with a clean run; land the bad-input corpus. Exit 1 if any "
                    "row was lost or doubled or a bad input did not give its expected outcome.",
    )
    parser.add_argument("--trials", type=int, default=50, help="number of crash trials (default 50)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the world and of the kill points")
    parser.add_argument("--days", type=int, default=3, help="days of the generated world (default 3)")
    parser.add_argument("--orders-per-day", type=int, default=80, help="orders per day (default 80)")
    parser.add_argument("--kinds", default=",".join(dict.fromkeys(KINDS)),
                        help="comma-separated trial kinds to draw from (default: all)")
    parser.add_argument("--small-insert-blocks", action="store_true",
                        help="make dbt write 64-row parts, as inserts of millions of rows do")
    default_corpus = project_dir() / "tests" / "badinput"
    parser.add_argument("--corpus", type=lambda text: Path(text) if text else None,
                        default=default_corpus if default_corpus.is_dir() else None,
                        help="bad-input corpus to land once (default: tests/badinput of the checkout; "
                             "'' for none)")
    parser.add_argument("--report", type=Path, help="write the figures as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep the generated world and warehouses here")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")

    started_at = datetime.now(UTC)
    rng = random.Random(args.seed)

    def log(message: str) -> None:
        print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)

    with _workdir(args.workdir, keep=False) as root:
        corpus = None
        if args.corpus:
            log(f"landing the bad-input corpus {args.corpus} ...")
            (root / "badinput").mkdir(exist_ok=True)
            corpus = try_corpus(args.corpus, root / "badinput")
            log(f"bad inputs: {corpus.tried} tried, {len(corpus.mismatches)} not as expected "
                + (f"({'; '.join(corpus.mismatches)})" if corpus.mismatches else ""))
        space, baselines = prepare(root, seed=args.seed, days=args.days, orders_per_day=args.orders_per_day,
                                   small_insert_blocks=args.small_insert_blocks, log=log)
        for name, base in baselines.items():
            log(f"clean {name} run: {base.run_seconds:.1f}s (load {base.load_begin:.1f}-{base.load_end:.1f}s, "
                f"dbt from {base.dbt_begin:.1f}s), {len(base.reference)} tables")
        runner = Runner(space, baselines, rng, log=log)
        weighted = tuple(k for k in KINDS if k in kinds)
        trials = []
        for number, kind in enumerate(plan(args.trials, rng, weighted), start=1):
            trial = runner.trial(number, kind)
            trials.append(trial)
            c = trial.comparison
            log(f"trial {number}/{args.trials} {kind:14} {trial.baseline:11} "
                f"{'OK ' if trial.ok else 'FAIL'} {trial.seconds:5.1f}s  {'; '.join(trial.fault_points)}"
                + (f"  lost {c.rows_lost} doubled {c.rows_doubled} unexpected {c.rows_unexpected}"
                   f" {c.tables_differing or ''}{c.tables_missing or ''}{c.tables_extra or ''}" if not c.ok else "")
                + (f"  {trial.error.splitlines()[0][:200]}" if trial.error else ""))
        figures = summarize(trials, baselines, space, seed=args.seed, argv=argv, started_at=started_at,
                            corpus=corpus, small_insert_blocks=args.small_insert_blocks)
    if args.report:
        args.report.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "details"}, indent=2))
    failed = figures["failed_trials"] or (corpus is not None and (corpus.mismatches or not corpus.files_kept))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
