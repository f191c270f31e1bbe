"""`ecom`: generate raw exports, land them in bronze, build the layers, query and report.

The options that name the raw folder, the report's file and the bench's folder also read
their environment variables (`ECOM_RAW_DIR`, `ECOM_REPORT_PATH`, `ECOM_BENCH_DIR`); the
warehouse and the target come from `ECOM_CHDB_PATH` and `DBT_TARGET` (SPEC section 2), so
`ecom`, dbt and Dagster agree. Results go to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ecom.config import (
    DEFAULT_REPORT_PATH,
    DEMO_START,
    REPORT_PATH_ENV,
    SettingError,
    Settings,
    data_path,
    dbt_executable,
    dbt_folder_problem,
    env_number,
    named_target,
    project_dir,
    unpriced_start_problem,
    usable_path,
)
from ecom.contract import MAX_ORDERS_PER_DAY, MAX_SEED, unloadable_days
from ecom.lock import DEFAULT_DBT_LOCK_WAIT, LOCK_WAIT_ENV, WarehouseUnavailable, pipeline_lock

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# clickhouse-connect logs driver failures on its own; the CLI reports them in one line instead.
logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
logging.getLogger("clickhouse_connect").propagate = False


class _Date(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx):
        if isinstance(value, date):
            return value
        try:
            return datetime.strptime(value, "%Y-%m-%d").date()
        except ValueError:
            self.fail(f"{value!r} is not a date like 2026-09-01", param, ctx)


DATE = _Date()


class _EnvOption(click.Option):
    """An option that can come from an environment variable: a bad value names the variable too,
    since that is where it may have been set."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        return f"{super().get_error_hint(ctx)} (or env {self.envvar})"


def _check_range(start: date | None, end: date | None) -> None:
    if start and end and start > end:
        raise click.UsageError(f"--start {start} is after --end {end}")


def _settings(raw_dir: Path | None = None) -> Settings:
    settings = Settings.from_env()
    if raw_dir is not None:
        settings = replace(settings, raw_dir=raw_dir)
    return settings


class _Results:
    """stdout for a command's results: a failed write (a reader gone, `ecom run | head -1`; a full
    disk) stops no work, such as the build after the load's counts or the JSON after the bench's
    table. The rest of the results are dropped, and the command ends by saying so, with status 1
    unless it failed otherwise."""

    failure: OSError | None = None

    def write(self, text: str) -> None:
        if _Results.failure is None and sys.stdout is not None:  # None: started with stdout closed (>&-)
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except OSError as exc:
                _Results.failure = exc
                with suppress(OSError, ValueError):  # Python flushing stdout at exit would fail again
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def flush(self) -> None:
        pass


def _result(text: str) -> None:
    print(text, file=_Results())


class EcomGroup(click.Group):
    """Turns the expected failures into one plain line on stderr instead of a traceback."""

    def invoke(self, ctx):
        _Results.failure = None
        try:
            outcome = super().invoke(ctx)
        except (WarehouseUnavailable, SettingError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except SystemExit as done:
            _tell_lost_results(done.code)
            raise
        except KeyboardInterrupt:  # click then says "Aborted!" and ends with status 1
            if ctx.invoked_subcommand in ("load", "run"):
                click.echo(f"stopped: run `ecom {ctx.invoked_subcommand}` again to finish; it first takes back "
                           "what this one left half done", err=True)
            raise
        _tell_lost_results(0)
        return outcome


def _tell_lost_results(code: int | str | None) -> None:
    if _Results.failure is not None:
        click.echo(f"error: could not write the results to stdout ({_Results.failure.strerror})", err=True)
        sys.exit(code if isinstance(code, int) and code else 1)


@click.group(cls=EcomGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ecom-analytics")
def main() -> None:
    """E-commerce sales analytics on ClickHouse.

    \b
    Raw CSV exports --load--> bronze --dbt--> silver --dbt--> gold --> report, docs
    The target comes from DBT_TARGET (dev: embedded ClickHouse at ECOM_CHDB_PATH;
    server, cluster: CLICKHOUSE_HOST and friends).
    """
    notices = logging.getLogger("ecom")  # e.g. that a command waits for the warehouse (--wait)
    if not notices.handlers:
        notices.addHandler(_Stderr())
        notices.setLevel(logging.INFO)


class _Stderr(logging.Handler):
    """Log records as plain lines on the stderr of the moment (click's, under its test runner)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _project_path(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """A path typed on the command line as given; one from the environment, or the default, is
    the project's, as `ecom.config.data_path` reads it. An empty one is refused: as a Path it
    is the working directory (a whole checkout written into, or landed from)."""
    if value is None:  # an option with no default, left out
        return None
    if not value.strip():
        default = " for the default" if isinstance(param.get_default(ctx), str) else ""
        raise click.BadParameter(f"is empty: give a path, or leave the option out{default}")
    if ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE:
        return Path(value)
    return data_path(value)


def _a_number(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):  # every comparison with NaN is false, so a range lets it through
        raise click.BadParameter(f"{value} is not a finite number")
    return value


@main.command()
@click.option("--start", type=DATE, default=DEMO_START.isoformat(), show_default=True, help="First day to write.")
@click.option("--days", type=click.IntRange(min=1), default=90, show_default=True, help="Number of days.")
@click.option("--orders-per-day", type=click.IntRange(1, MAX_ORDERS_PER_DAY), default=1000, show_default=True,
              help="Average orders on an ordinary day (weekdays and Q4 vary around it); a day's files are "
                   "built in memory, about 2.5 GB per million orders.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=42, show_default=True,
              help="Same seed, same files, byte for byte.")
@click.option("--dirty-rate", type=click.FloatRange(0, 0.5), default=0.02, show_default=True, callback=_a_number,
              help="Share of rows that get each kind of dirt (duplicates, bad timestamps, ...); the defects "
                   "other than test orders take at most half of an entity's rows, test orders (drawn "
                   "at this rate too) come on top.")
@click.option("--out", type=click.Path(), cls=_EnvOption, envvar="ECOM_RAW_DIR", default="data/raw",
              callback=_project_path, help="Raw directory [env ECOM_RAW_DIR; default: data/raw of the project].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(start: date, days: int, orders_per_day: int, seed: int, dirty_rate: float, out: Path,
             quiet: bool) -> None:
    """Write raw source exports: one CSV per entity per day, plus a manifest of the dirt injected.

    Later days continue the same world, so `--start` right after an earlier run's last day
    simulates daily arrivals. A folder of files it did not write (real exports), days that
    already hold such files, or another world's days, are refused: nothing is written among
    files that are not its own.
    """
    from ecom.generate import ForeignFiles, WorldMismatch, WorldTooLarge
    from ecom.generate import generate as run_generator

    # the days ClickHouse's Date can hold: the loader rejects a file of any other day
    if problem := unloadable_days(start, days):
        raise click.UsageError(problem)
    if problem := unpriced_start_problem(start, f"--start {start}"):
        raise click.UsageError(problem)
    try:
        manifest = run_generator(out, start=start, days=days, orders_per_day=orders_per_day, seed=seed,
                                 dirty_rate=dirty_rate, progress=not quiet)
    except (WorldMismatch, ForeignFiles, WorldTooLarge) as exc:
        click.echo(f"error: {str(exc).replace('(--out)', f'({_out_option()})')}", err=True)
        sys.exit(1)
    except OSError as exc:  # --out is a file, cannot be written, or its disk is full
        option = _out_option()
        remedy = (f"give {option} a directory" if isinstance(exc, NotADirectoryError | FileExistsError)
                  else f"check the disk and the permissions of {option}")
        click.echo(f"error: cannot write to {exc.filename or out}: {exc.strerror or exc}; {remedy}", err=True)
        sys.exit(1)
    end = start + timedelta(days=days - 1)
    _result(f"wrote {start}..{end} to {out} (manifests in {out / '_manifest'})")
    if isinstance(manifest, dict) and manifest.get("summary"):
        _result(manifest["summary"])


def _out_option() -> str:
    """How the user named the output directory of `ecom generate`."""
    source = click.get_current_context().get_parameter_source("out")
    return "ECOM_RAW_DIR" if source == click.core.ParameterSource.ENVIRONMENT else "--out"


def _run_load(settings: Settings, start: date | None, end: date | None, wait: float, quiet: bool,
              then: Callable[[Client], None] | None = None) -> int:
    """Land the files; `then` reads the warehouse after them, in the same session."""
    from tqdm import tqdm

    from ecom.load import discover, load, print_summary, raw_dir_problem
    from ecom.warehouse import session

    usable_path("ECOM_RAW_DIR", settings.raw_dir)  # a loop of links, a name too long: said by name
    if not settings.raw_dir.is_dir():
        problem = "is not a directory" if settings.raw_dir.exists() else "does not exist"
        click.echo(f"error: raw directory {settings.raw_dir} {problem}; run `ecom generate`, or point "
                   "ECOM_RAW_DIR (`ecom load --raw-dir`) at the exports", err=True)
        return 1
    if problem := raw_dir_problem(settings.raw_dir):
        click.echo(f"error: {problem}", err=True)
        return 1
    files = discover(settings.raw_dir, start, end)
    with session(settings, wait_seconds=wait) as client, tqdm(
        total=len(files), unit="file", desc="landing", disable=quiet or None, file=sys.stderr
    ) as bar:
        def on_file(outcome):
            bar.update(1)
            if outcome.status == "rejected":
                bar.write(f"rejected {outcome.file.relative}: {outcome.reason}: {outcome.detail}", file=sys.stderr)

        result = load(settings, client, start, end, on_file=on_file, files=files)
        if then is not None and result.exit_code != 1:
            then(client)
    days = "" if start is None and end is None else (
        f" for {start}" if start == end else f" for {start or 'the first day'}..{end or 'the last day'}")
    print_summary(result, out=_Results(), looked_in=f"in {settings.raw_dir}{days}")
    return result.exit_code


@main.command("load")
@click.option("--raw-dir", type=click.Path(), cls=_EnvOption, envvar="ECOM_RAW_DIR", default="data/raw",
              callback=_project_path, help="Raw directory [env ECOM_RAW_DIR; default: data/raw of the project].")
@click.option("--start", type=DATE, help="Only files of this day or later (and misnamed files, but for those "
              "in the folders of earlier days).")
@click.option("--end", type=DATE, help="Only files of this day or earlier (and misnamed files, but for those "
              "in the folders of later days).")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True, callback=_a_number,
              help="Seconds to wait for another process to release the embedded warehouse.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def load_command(raw_dir: Path, start: date | None, end: date | None, wait: float, quiet: bool) -> None:
    """Land every raw file not landed yet into bronze, exactly once.

    Exit status: 0 all landed (or nothing new), 3 some files were rejected in this run (the good
    ones still landed; reasons in bronze.ingest_log), 1 on failure.
    """
    _check_range(start, end)
    settings = _settings(raw_dir)
    waited = time.monotonic()
    with pipeline_lock(settings.chdb_path, wait) if settings.embedded else nullcontext():
        code = _run_load(settings, start, end, _left(wait, waited), quiet)
    sys.exit(code)


def _left(wait: float, since: float) -> float:
    """What is left of --wait after the wait for the pipeline lock, for the engine's: one budget."""
    return max(0.0, wait - (time.monotonic() - since))


def dbt(*args: str, settings: Settings | None = None, wait: float = 0.0) -> int:
    """Run the dbt CLI of this environment on the project, streaming its output; with `wait`, dbt
    waits as long for another process to release the embedded warehouse."""
    root = project_dir()
    command = [dbt_executable(), *args,
               "--project-dir", str(root), "--profiles-dir", str(root)]
    env = dict(os.environ)
    if settings is not None:
        env["ECOM_CHDB_PATH"] = str(settings.chdb_path.resolve())
        # The target as plain dbt gets it, from DBT_TARGET, unless that would name another: dbt
        # keeps --target in its partial-parse state, so passing it always made each switch
        # between `ecom run` and `dbt build` parse the project anew.
        if named_target(env) != settings.target:
            command += ["--target", settings.target]
    if wait:
        env[LOCK_WAIT_ENV] = str(wait)
    if not env.get("DBT_USE_COLORS") and (env.get("NO_COLOR") or not (sys.stderr and sys.stderr.isatty())):
        # dbt colours its lines wherever they go: a CI log or a file got the escape codes.
        env["DBT_USE_COLORS"] = "false"
    try:
        return _call_passing_on_signals(command, cwd=root, env=env, stdout=sys.stderr)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:  # the install is broken, not the run
        raise SettingError(f"cannot start dbt ({command[0]}): {exc.strerror or exc}; run `make install` to "
                           "install it again") from None


def _call_passing_on_signals(command: list[str], **kwargs) -> int:
    """`subprocess.call`, but ecom ends only after its child has: a SIGTERM or SIGHUP to ecom
    (`kill`, `timeout`, a closed terminal, a CI cancel) is passed on to the child, and ecom then
    ends by the same signal. Without it, ecom ended at once while its dbt went on building, no
    longer covered by the pipeline lock: the next `ecom run` took the lock and then found the
    warehouse held. A Ctrl-C reaches the child from the terminal too (one process group, so
    that whoever stops the group stops both): the child is given 10 s to stop on its own, then
    the SIGINT, then killed."""
    if threading.current_thread() is not threading.main_thread():
        return subprocess.call(command, **kwargs)
    received: list[int] = []
    started: list[subprocess.Popen] = []

    def pass_on(signum: int, _frame) -> None:
        received.append(signum)
        for child in started:
            child.send_signal(signum)

    # A signal ecom was started with ignored (`nohup` ignores SIGHUP) stays ignored, for dbt too.
    previous = {signum: signal.signal(signum, pass_on) for signum in (signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        with subprocess.Popen(command, **kwargs) as child:
            started.append(child)
            if received:  # a signal that came before the child was there
                child.send_signal(received[0])
            try:
                code = child.wait()
            except KeyboardInterrupt:
                _stop(child)
                raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        # A signal inherited blocked (a parent's mask passes to its children) would stay pending,
        # and ecom would go on as if its dbt had failed.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {received[0]})
        signal.raise_signal(received[0])
    return code


def _stop(child: subprocess.Popen) -> None:
    """End a child after a SIGINT to this process, which the child may have had too; a second
    Ctrl-C meanwhile does not cut the wait short (ecom would end before its child)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for signum, seconds in ((None, 10), (signal.SIGINT, 30), (signal.SIGKILL, None)):
            if signum is not None:
                child.send_signal(signum)
            try:
                child.wait(timeout=seconds)
                return
            except subprocess.TimeoutExpired:
                continue
    finally:
        signal.signal(signal.SIGINT, previous)


@main.command()
@click.option("--date", "day", type=DATE, help="The one day to run (and misnamed files, but for those in the "
              "folders of other days).")
@click.option("--start", type=DATE, help="First day of a range.")
@click.option("--end", type=DATE, help="Last day of a range.")
@click.option("--full-refresh", is_flag=True, help="Rebuild every incremental model from all of bronze.")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True, callback=_a_number,
              help="Seconds to wait for another process to release the embedded warehouse.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run(day: date | None, start: date | None, end: date | None, full_refresh: bool, wait: float,
        quiet: bool) -> None:
    """Load the raw files of a day (or a range, or all), then `dbt build`; no Dagster needed.

    The build leaves out dbt's unit tests, as the Dagster jobs do: they check the models' SQL, not
    the data, so they belong to `dbt build` in development and CI, not to every daily run. It
    leaves out the seeds and their tests too while the reference tables hold what the seed files
    did at the last build that loaded them (--full-refresh always loads them).

    Exit status: 0 built, 3 built but some files were rejected in this run's load (reasons in
    bronze.ingest_log), 1 on failure (the load's or dbt's)."""
    if day and (start or end):
        raise click.UsageError("give either --date or --start/--end")
    if day:
        start = end = day
    _check_range(start, end)
    if problem := dbt_folder_problem(project_dir()):
        click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    settings = _settings()
    if settings.embedded and not wait:
        # dbt reads it when it opens the warehouse (--wait replaces it): a bad value would stop the
        # build after the load.
        env_number(LOCK_WAIT_ENV, DEFAULT_DBT_LOCK_WAIT, 0, math.inf, "a number of seconds, 0 or more")
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from ecom import reference
    from ecom.warehouse import session

    reference_current: list[bool] = []
    waited = time.monotonic()
    with pipeline_lock(settings.chdb_path, wait) if settings.embedded else nullcontext():
        code = _run_load(settings, start, end, _left(wait, waited), quiet, then=lambda client: reference_current.append(
            not full_refresh and reference.is_current(client, project_dir())))
        if code == 1:
            sys.exit(1)
        build = ["build", "--exclude-resource-type", "unit_test"]
        build += ["--full-refresh"] if full_refresh else []
        build += reference.LEAVE_OUT if reference_current == [True] else []
        began = time.time()
        if (status := dbt(*build, settings=settings, wait=wait)) != 0:
            # dbt resolves DBT_TARGET_PATH (default `target`) against the project directory.
            results = project_dir() / (os.environ.get("DBT_TARGET_PATH") or "target") / "run_results.json"
            # One ended by a signal wrote no summary, and maybe no log line: say which signal.
            how = f"was killed by signal {-status}" if status < 0 else "failed"
            # A build that stopped before its first node (a project that does not parse) leaves an
            # earlier build's results there.
            written = results.exists() and results.stat().st_mtime >= began - 1
            click.echo(f"error: dbt build {how}; see the log above" + (f" and {results}" if written else ""),
                       err=True)
            sys.exit(1)
        if reference_current != [True]:
            try:
                with session(settings, wait_seconds=wait) as client:
                    reference.record(client, project_dir())
            except (WarehouseUnavailable, ClickHouseError) as exc:
                reason = " ".join(str(exc).split())[:200]
                click.echo(f"warning: the seeds were loaded, but noting so failed ({reason}); the next run loads "
                           "them again", err=True)
    _result(f"built bronze -> silver -> gold on {settings.describe()}")
    sys.exit(code)


def _require_warehouse(settings: Settings) -> None:
    """Reading commands stop on an embedded warehouse that is not there: the engine would create
    one at a mistyped ECOM_CHDB_PATH and answer from it, empty."""
    if settings.embedded and not settings.chdb_path.exists():
        click.echo(f"error: no warehouse at {settings.chdb_path.resolve()} (ECOM_CHDB_PATH): run `ecom run` first, "
                   "or check the path", err=True)
        sys.exit(1)


# Control characters shown escaped: printed raw, line ends and tabs would break the rows of the
# table, and an escape sequence in a value (ESC [2J) would drive the terminal.
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7f, 0xa0))} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _width(text: str) -> int:
    """Columns `text` takes on a terminal: two for a wide character (CJK), none for a combining mark
    or a format character (a zero-width joiner)."""
    return sum(0 if unicodedata.category(c) in ("Mn", "Me", "Cf") else 2 if unicodedata.east_asian_width(c) in "WF"
               else 1 for c in text)


def format_table(columns: list[str], rows: list[tuple], limit: int | None = None, more: bool = False) -> str:
    """A plain-text table, numbers right-aligned; `more`: the rows are the first of a longer result."""
    shown = rows if limit is None else rows[:limit]
    names = [name.translate(_CONTROL_ESCAPES) for name in columns]
    cells = [["NULL" if v is None else str(v).translate(_CONTROL_ESCAPES) for v in row] for row in shown]
    widths = [max([_width(c), *(_width(r[i]) for r in cells)]) for i, c in enumerate(names)]
    numeric = [all(isinstance(row[i], int | float | Decimal) or row[i] is None for row in shown) and bool(shown)
               for i in range(len(columns))]

    def line(values: list[str]) -> str:
        padded = (" " * (w - _width(v)) + v if num else v + " " * (w - _width(v))
                  for v, w, num in zip(values, widths, numeric, strict=True))
        return " | ".join(padded).rstrip()

    out = [line(names), "-+-".join("-" * w for w in widths), *(line(r) for r in cells)]
    if more:
        out.append(f"(first {len(shown)} rows shown; the query returns more: raise --limit or narrow it)")
    else:
        out.append(f"({len(rows)} rows{f', first {len(shown)} shown' if len(rows) > len(shown) else ''})")
    return "\n".join(out)


@main.command()
@click.argument("query")
# The engine's `limit` setting gets one more (a signed 64-bit number on the way).
@click.option("--limit", type=click.IntRange(min=0, max=2**63 - 2), default=200, show_default=True,
              help="Rows to print at most.")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True, callback=_a_number,
              help="Seconds to wait for another process to release the embedded warehouse.")
def sql(query: str, limit: int, wait: float) -> None:
    """Run QUERY, one statement, on the warehouse of the current target and print a table.

    Read-only: SELECT, SHOW, DESCRIBE, EXISTS and EXPLAIN of a SELECT (EXPLAIN AST and SYNTAX of
    any statement); statements that write (INSERT, ALTER, DROP, TRUNCATE, INTO OUTFILE, ...) are
    refused, since bronze is append-only and the loader's
    ingest log must match it. The engine stops a SELECT at --limit rows, so a look at a large
    table costs little (a server user who may change no setting gets the whole result, cut here).
    Control characters in a value are shown escaped (\\n, \\t, \\x1b).

    A query that starts with a `--` comment goes after `--`, or the comment reads as an option:
    `ecom sql -- "$(cat query.sql)"`."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from ecom.load import _engine_message
    from ecom.warehouse import described_columns, session

    if not query.strip():
        raise click.UsageError("QUERY is empty")
    settings = _settings()
    _require_warehouse(settings)
    # readonly = 2: reads, and settings in the query, but nothing that writes. In-process it is set
    # for the session; a server gets it with the query itself (an HTTP session may not stick).
    readonly = None if settings.embedded else {"readonly": 2}
    with session(settings, wait_seconds=wait) as client:
        if settings.embedded:
            client.command("SET readonly = 2")
        try:
            statement, kind = _one_read(client, query)
            # The engine's `limit` setting caps the outermost SELECT; one row more tells that there is more.
            limited = {"limit": limit + 1} if kind == "select" else {}
            try:
                result = client.query(statement, settings={**(readonly or {}), **limited} or None)
            except DatabaseError as exc:
                refused = "Cannot modify 'readonly'" in str(exc) or re.search(r"Setting \w+ is readonly", str(exc))
                if readonly is None or not refused:
                    raise
                # A server user that is read-only already, and may change no setting (refused by
                # the server, or by the client from the server's settings): the whole result
                # comes, and the table shows its first rows.
                result = client.query(statement)
        except DatabaseError as exc:
            # The statement as `_one_read` sent it to the engine to format is no news to the user.
            said = re.sub(r"\.? ?: In scope SELECT formatQuerySingleLine\(.*$", "", " ".join(str(exc).split()))
            message = _engine_message(Exception(said)).replace(" FORMAT Native", "")
            if "(READONLY)" in str(exc):
                message += READ_ONLY
            elif "Multi-statements are not allowed" in message:
                message += "; `ecom sql` runs one statement at a time"
            elif "(UNKNOWN_DATABASE)" in str(exc) or "(UNKNOWN_TABLE)" in str(exc):
                where = "ECOM_CHDB_PATH" if settings.embedded else "CLICKHOUSE_HOST"
                message += f"; looked in the {settings.describe()}: build it with `ecom run`, or check {where}"
            click.echo(f"error: {message}", err=True)
            sys.exit(1)
        except click.UsageError as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(1)
        rows = list(result.result_rows)
        columns = result.column_names or (described_columns(client, statement) if kind == "select" else ())
    _result(format_table(list(columns), rows, limit, more=len(rows) > limit))


READ_ONLY = "; `ecom sql` only reads: write through `ecom load`, `ecom run` or dbt"
# Statements that only read, by the class of their syntax tree's root (EXPLAIN AST).
_READ_ROOTS = {"SelectWithUnionQuery": "select", "SelectIntersectExceptQuery": "select", "Explain": "other",
               "Describe": "other", "Show": "other", "Exists": "other"}
# The first words such statements can start with, as the engine formats them.
_READ_WORDS = {"SELECT", "WITH", "FROM", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"}


def _one_read(client, query: str) -> tuple[str, str]:
    """The query as the engine formats it, and "select" or "other"; click.UsageError when it
    writes or prints elsewhere than here. The engine's own parser decides: more than one statement
    is its syntax error, and the root of the statement's tree says what it does. The session's
    `readonly` does not cover all: the embedded engine runs `INSERT INTO FUNCTION file(...)` and
    `INTO OUTFILE` under it, which would write any file this user can."""
    statement = client.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": query}).result_rows[0][0]
    refused = click.UsageError(f"{statement.split()[0]} is not one of the statements that only read (SELECT, "
                               f"SHOW, DESCRIBE, EXISTS, EXPLAIN){READ_ONLY}")
    # Refused before the EXPLAIN, which the client ends in a FORMAT clause: `SYSTEM FLUSH LOGS`
    # would read it as the name of a log and fail with a syntax error instead.
    if statement.lstrip("(").split()[0].upper() not in _READ_WORDS:
        raise refused
    # A raw query: the client takes a query ending in LIMIT 0 for a probe of the columns, and the
    # EXPLAIN of one returns rows, which it refuses.
    tree = client.raw_query(f"EXPLAIN AST {statement}", fmt="TabSeparated").decode().splitlines()
    root = tree[0].split()[0]
    kind = next((k for prefix, k in _READ_ROOTS.items() if root.startswith(prefix)), None)
    if kind is None:
        raise refused
    # The root's own children: an output file (INTO OUTFILE) is a string literal there.
    children = [line.strip() for line in tree[1:] if line.startswith(" ") and not line.startswith("  ")]
    if any(child.startswith("Literal") for child in children):
        raise click.UsageError(f"INTO OUTFILE writes a file{READ_ONLY}")
    # An EXPLAIN explains a SELECT (its settings and the client's FORMAT beside it), but AST and
    # SYNTAX, which only parse: the engine builds an INSERT's pipeline up to its output, so EXPLAIN
    # PIPELINE INSERT INTO FUNCTION file(...) creates or empties a file.
    if root == "Explain" and not re.match(r"Explain EXPLAIN (AST|SYNTAX)\b", tree[0]) and not all(
            c.startswith(("Set", "Identifier", "SelectWithUnionQuery", "SelectIntersectExceptQuery"))
            for c in children):
        raise click.UsageError(f"EXPLAIN of a statement other than SELECT (but EXPLAIN AST or SYNTAX): the engine "
                               f"builds what it explains, up to an INSERT's table or file{READ_ONLY}")
    # The client asks for a format of its own: one of the query's, even Native, breaks the reply.
    # The engine's formatting writes the keyword upper-case, and string literals are left out; a
    # FORMAT clause is an identifier among the root's children (a column named FORMAT is not).
    for name in re.findall(r"\bFORMAT\s+(\S+)", re.sub(r"'(?:[^'\\]|\\.)*'", "''", statement)):
        if f"Identifier {name}" in children:
            raise click.UsageError(f"FORMAT {name}: `ecom sql` prints a table; leave out the FORMAT clause")
    return statement, kind


@main.command()
@click.option("--out", type=click.Path(dir_okay=False), cls=_EnvOption, envvar=REPORT_PATH_ENV,
              default=DEFAULT_REPORT_PATH, callback=_project_path,
              help=f"HTML file to write [env {REPORT_PATH_ENV}; default: {DEFAULT_REPORT_PATH} of the project].")
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True, callback=_a_number,
              help="Seconds to wait for another process to release the embedded warehouse.")
def report(out: Path, wait: float) -> None:
    """Write the HTML dashboard from the gold marts and print its path.

    One self-contained page (plotly inlined, no network): daily net revenue and orders with a
    date range and a country filter, AOV, new vs returning customers, revenue by country and
    category, top products and product pairs, cohort retention, and data quality. Open it in
    any browser.
    """
    from ecom.report import ReportError, write_report
    from ecom.warehouse import session

    settings = _settings()
    _require_warehouse(settings)
    try:
        with session(settings, wait_seconds=wait) as client:
            written = write_report(client, out)
    except ReportError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _result(str(written.resolve()))


@main.command()
@click.option("--quick", is_flag=True, help="A small run (50,000 order lines, 7 and 70 days of "
              "history) in about two minutes: the smoke test.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), callback=_project_path,
              help="Also write the figures to this JSON file.")
@click.option("--cache-dir", type=click.Path(file_okay=False), cls=_EnvOption, envvar="ECOM_BENCH_DIR",
              default="data/bench", callback=_project_path,
              help="Where generated datasets are cached and the runs work [env ECOM_BENCH_DIR; default: "
              "data/bench of the project].")
@click.option("--lines", type=click.IntRange(min=1000), help="Order lines of the 10x history "
              "[default: 10,000,000; 50,000 with --quick].")
@click.option("--days", type=click.IntRange(min=1), help="Days of the 1x history, whole weeks; 10x has ten "
              "times as many at the same daily volume [default: 364; 7 with --quick].")
@click.option("--no-postgres", is_flag=True, help="Leave out the pandas to_sql into PostgreSQL peer.")
@click.option("--keep", is_flag=True, help="Keep the run's warehouses in <cache-dir>/run: the landing "
              "contenders' in landing/, and each history's after its one more day in warehouse-1x and "
              "warehouse-10x.")
def bench(quick: bool, json_path: Path | None, cache_dir: Path, lines: int | None, days: int | None,
          no_postgres: bool, keep: bool) -> None:
    """The benchmark of SPEC section 8: landing, full refresh, one more day, with peers side by side.

    \b
    Landing order lines into bronze: ecom load, next to the engine's own INSERT ... SELECT
      FROM file() of the same files, DuckDB read_csv and pandas to_sql into PostgreSQL.
    Full refresh raw to gold (ecom load + dbt build): wall time, peak memory, time per layer.
    One more day on 1x and 10x history (10x the days at the same daily volume), and the ratio.

    Generated data is cached in --cache-dir; the warehouses of the run are its own, never
    ECOM_CHDB_PATH. Prints a table on stdout, progress on stderr; exit 1 if a step failed.
    """
    from ecom.bench import FULL, QUICK
    from ecom.bench import main as run_bench

    scale = QUICK if quick else FULL
    scale = replace(scale, lines=lines or scale.lines, days_1x=days or scale.days_1x)
    sys.exit(run_bench(scale, cache_dir, json_path, postgres=not no_postgres, keep=keep, out=_Results()))


if __name__ == "__main__":
    main()
