"""Sensors: start a run when new raw files arrive, and raise an alert when a run fails.

`new_raw_files` lists ECOM_RAW_DIR every minute and remembers, per day, a signature of the
day's files (names, sizes, modification times) in its cursor once they are all in the ingest
log, so an idle tick touches no warehouse. When a day's files changed, it asks
`bronze.ingest_log` which of them have not landed yet, holding the embedded warehouse for well
under a second; when another process has it (or a pipeline holds the pipeline lock of `ecom
run`), the tick is skipped with a message and the day is looked at again next minute. The days
with unlanded files get one run of the daily pipeline each, or one run for a range of
consecutive days (as a backfill runs them: a range costs little more than a day). A day stays
due until its files land: while its run is queued or running, the request repeats its run key
(Dagster starts nothing new); once that run failed or was cancelled, the day gets a new run.

`alert_on_run_failure` logs every failed run and, when ECOM_ALERT_WEBHOOK is set, POSTs a JSON
alert there (`text` carries a one-line summary, so a Slack or Teams incoming webhook shows it).
"""

import hashlib
import json
import os
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from clickhouse_connect.driver.exceptions import DatabaseError

from ecom.config import Settings, env_flag
from ecom.load import LOG_TABLE, RawFile, discover, file_sha256
from ecom.lock import WarehouseLocked, WarehouseUnavailable, describe_holder, lock_holder, pipeline_lock
from ecom.warehouse import session
from orchestration.assets_raw import missing_runs
from orchestration.partitions import day_of

if TYPE_CHECKING:  # define_asset_job's return type is not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

NEW_FILES_SENSOR = "new_raw_files"
FAILURE_SENSOR = "alert_on_run_failure"
AUTOMATION_ENV = "ECOM_AUTOMATION"
WEBHOOK_ENV = "ECOM_ALERT_WEBHOOK"
UI_URL_ENV = "ECOM_DAGSTER_URL"


def default_status(environ: Mapping[str, str] | None = None) -> dg.DefaultSensorStatus:
    """Schedules and sensors start running with the daemon unless ECOM_AUTOMATION=off."""
    on = env_flag(AUTOMATION_ENV, True, environ)
    return dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED


# -- new raw files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """The latest ingest-log entry of a path."""

    bytes: int
    sha256: str
    finished_at: float  # epoch seconds


def files_by_day(raw_dir: Path, first: date, last: date) -> dict[str, list[RawFile]]:
    days: dict[str, list[RawFile]] = {}
    for raw in discover(raw_dir, first, last) if raw_dir.is_dir() else []:
        if raw.file_date is not None and first <= raw.file_date <= last:
            days.setdefault(raw.file_date.isoformat(), []).append(raw)
    return days


def signature(files: Iterable[RawFile]) -> str:
    """Changes when a file of the day appears, disappears, or is rewritten."""
    digest = hashlib.sha1(usedforsecurity=False)
    for raw in sorted(files, key=lambda f: f.relative):
        stat = raw.path.stat()
        digest.update(f"{raw.relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def unlanded(files: Iterable[RawFile], ledger: Mapping[str, Logged]) -> list[RawFile]:
    """Files the ingest log does not hold in their current version (landed or rejected)."""
    pending = []
    for raw in files:
        logged = ledger.get(raw.relative)
        stat = raw.path.stat()
        if logged is None or logged.bytes != stat.st_size:
            pending.append(raw)
        elif stat.st_mtime > logged.finished_at and file_sha256(raw.path) != logged.sha256:
            pending.append(raw)  # rewritten in place with the same size
    return pending


def read_ledger(settings: Settings) -> dict[str, Logged]:
    """Latest ingest-log entry per path; raises WarehouseLocked when another process has it."""
    if not settings.embedded:
        return _query_ledger(settings)
    path = settings.chdb_path.resolve()
    if not path.exists():
        return {}
    with pipeline_lock(path, 0):  # a pipeline (Dagster step, `ecom run`) holds it: raises at once
        pid = lock_holder(path)
        if pid is not None:
            raise WarehouseLocked(f"warehouse {path} is in use by {describe_holder(pid)}")
        return _query_ledger(settings)


def _query_ledger(settings: Settings) -> dict[str, Logged]:
    with session(settings) as client:
        try:
            rows = client.query(
                f"SELECT file_path, argMax(bytes, finished_at), argMax(sha256, finished_at), "
                f"toUnixTimestamp64Milli(max(finished_at)) FROM {LOG_TABLE} "
                "WHERE status IN ('landed', 'rejected') GROUP BY file_path"
            ).result_rows
        except DatabaseError as exc:
            if "UNKNOWN_TABLE" in str(exc) or "UNKNOWN_DATABASE" in str(exc):
                return {}  # nothing has landed into this warehouse yet
            raise
    return {path: Logged(int(size), sha, millis / 1000) for path, size, sha, millis in rows}


_GAVE_UP = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _attempt_key(instance: dg.DagsterInstance, key: str) -> str:
    """`key`, or `key#N` after N runs of these files that failed or were cancelled: Dagster starts
    no second run for a run key it has seen, so a retry needs a key of its own. While a run of
    the key is queued, running or done, the same key again (Dagster skips it)."""
    attempt, candidate = 0, key
    while runs := instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": candidate}), limit=1):
        if runs[0].status not in _GAVE_UP:
            return candidate
        attempt += 1
        candidate = f"{key}#{attempt}"
    return candidate


def _run_request(instance: dg.DagsterInstance, run: list[str], signatures: Mapping[str, str]) -> dg.RunRequest:
    """One day's partition, or a range of days in one run; the key changes with any of their files."""
    tags = {"ecom/trigger": NEW_FILES_SENSOR}
    if len(run) == 1:
        return dg.RunRequest(run_key=_attempt_key(instance, f"{run[0]}:{signatures[run[0]]}"),
                             partition_key=run[0], tags=tags)
    digest = hashlib.sha1("".join(signatures[day] for day in run).encode(), usedforsecurity=False).hexdigest()
    return dg.RunRequest(run_key=_attempt_key(instance, f"{run[0]}..{run[-1]}:{digest[:16]}"), tags={
        **tags, "dagster/asset_partition_range_start": run[0], "dagster/asset_partition_range_end": run[-1]})


def build_new_files_sensor(job: "UnresolvedAssetJobDefinition",
                           partitions_def: dg.TimeWindowPartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=NEW_FILES_SENSOR,
        job=job,
        minimum_interval_seconds=60,
        default_status=default_status(),
        description="Starts the daily pipeline for the days whose raw files in ECOM_RAW_DIR are not yet in "
                    "bronze.ingest_log (consecutive days as one run of their range); skips the tick while "
                    "another process has the embedded warehouse.",
    )
    def new_raw_files(context: dg.SensorEvaluationContext):
        settings = Settings.from_env()
        if not settings.raw_dir.is_dir():
            return dg.SkipReason(f"raw directory {settings.raw_dir.resolve()} does not exist (ECOM_RAW_DIR)")
        last_key = partitions_def.get_last_partition_key()
        if last_key is None:
            return dg.SkipReason("no partition is open yet (ECOM_START_DATE is today or later)")
        first = day_of(partitions_def.get_first_partition_key())
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        days = files_by_day(settings.raw_dir, first, day_of(last_key))
        signatures = {day: signature(files) for day, files in days.items()}
        changed = sorted(day for day, sig in signatures.items() if seen.get(day) != sig)
        if not changed:
            return dg.SkipReason(f"no new raw files in {settings.raw_dir.resolve()} ({len(days)} days seen)")
        try:
            ledger = read_ledger(settings)
        except WarehouseUnavailable as exc:
            return dg.SkipReason(f"{exc}; {len(changed)} day(s) with changed files wait for the next tick")
        due: list[str] = []
        for day in changed:
            pending = unlanded(days[day], ledger)
            if pending:
                context.log.info(f"{day}: {len(pending)} file(s) not landed yet: "
                                 + ", ".join(raw.relative for raw in pending[:5]))
                due.append(day)
            else:  # remembered once its files are in the ingest log: until then every tick looks again
                seen[day] = signatures[day]
        requests = [
            _run_request(context.instance, [(first + timedelta(days=i)).isoformat() for i in range(count)],
                         signatures)
            for first, count in missing_runs([date.fromisoformat(day) for day in due])
        ]
        cursor = json.dumps(seen, sort_keys=True, separators=(",", ":"))
        if not requests:
            return dg.SensorResult(skip_reason=dg.SkipReason(
                f"files of {len(changed)} changed day(s) are all in {LOG_TABLE} already"), cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return new_raw_files


# -- alerts -----------------------------------------------------------------------------------


def _why(context: dg.RunFailureSensorContext) -> str | None:
    """Dagster's sentence on the run, then the first line of each failed step's error (at most
    three): "Steps failed: ['bronze_landing']" alone does not say why."""
    causes = []
    for event in context.get_step_failure_events()[:3]:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:  # Dagster wraps the step's own error
            error = error.cause
        if error is not None and error.message.strip():
            causes.append(f"{event.step_key}: {error.message.strip().splitlines()[0][:300]}")
    message = context.failure_event.message
    return " ".join([message or "", *causes]).strip() or None


def alert_payload(run: dg.DagsterRun, error: str | None) -> dict[str, str | None]:
    partition = run.tags.get("dagster/partition") or (
        f"{run.tags['dagster/asset_partition_range_start']}..{run.tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in run.tags else None
    )
    base = os.environ.get(UI_URL_ENV, "http://127.0.0.1:3000").rstrip("/")
    what = f"{run.job_name}" + (f" for {partition}" if partition else "")
    return {
        "text": f"ecom pipeline run failed: {what} (run {run.run_id[:8]}): {error or 'no error message'}",
        "status": "failure",
        "job": run.job_name,
        "run_id": run.run_id,
        "partition": partition,
        "error": error,
        "url": f"{base}/runs/{run.run_id}",
    }


def post_json(url: str, payload: Mapping[str, object], timeout: float = 10.0) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "ecom-alerts"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


@dg.run_failure_sensor(
    name=FAILURE_SENSOR,
    default_status=default_status(),
    description="Logs every failed run and POSTs a JSON alert to ECOM_ALERT_WEBHOOK when it is set.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
    payload = alert_payload(context.dagster_run, _why(context))
    context.log.error(payload["text"])
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if not url:
        return
    try:
        status = post_json(url, payload)
    except (OSError, ValueError) as exc:  # ValueError: not a URL urllib can open ("unknown url type")
        # The log line above stays; raising marks the sensor's tick as failed in the UI, so an
        # unreachable webhook is seen (Dagster moves on to the next failed run either way).
        context.log.error(f"could not deliver the alert to {WEBHOOK_ENV}: {exc}")
        raise
    context.log.info(f"alert delivered to {WEBHOOK_ENV} (HTTP {status})")
