"""Sensors: start a run when new raw files arrive, and raise an alert when a run fails or ends
with a failed check.

`new_raw_files` lists ECOM_RAW_DIR every minute and remembers, per day, a signature of the
day's files (names, sizes, modification times) in its cursor, so an idle tick touches no
warehouse. When a day's files changed, it asks `bronze.ingest_log` which of them have not
landed yet, holding the embedded warehouse for well under a second; when another process has
it (or a pipeline holds the pipeline lock of `ecom run`), the tick is skipped with a message and
the day is looked at again next minute. The days
with unlanded files get one run of the daily pipeline each, or one run for a range of
consecutive days (as a backfill runs them: a range costs little more than a day). A new file
whose name gives no day (misnamed or misplaced) goes with a run asked for anyway whose load
searches its folder, or else gets one run of the latest day with files; the load rejects it, so
the run's `no_rejected_files` check names it at once. The cursor
also keeps the runs it asked for: one that failed is asked for again, twice at most, from
Dagster's run records alone; one that succeeded or was cancelled is forgotten.

`alert_on_run_failure` logs every failed run and, when ECOM_ALERT_WEBHOOK is set, POSTs a JSON
alert there (`text` carries a one-line summary, so a Slack or Teams incoming webhook shows it).
`alert_on_failed_checks` does the same for a run that succeeded with one of the project's own
checks failed (ALERTED_CHECKS): a warning does not fail the run (the landing's
`no_rejected_files` warns while a rejected file waits in the raw folder, where `ecom load` exits
3; a stopped feed fails its freshness check in a run of its own), so without it nobody would be
told.
"""

import hashlib
import json
import os
import stat as file_stat
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from clickhouse_connect.driver.exceptions import DatabaseError

from ecom.config import SettingError, Settings, env_flag
from ecom.contract import COLUMNS
from ecom.load import LOG_TABLE, RawFile, discover, file_sha256, searched_by_load
from ecom.load import inspect as inspect_file
from ecom.lock import WarehouseLocked, WarehouseUnavailable, describe_holder, lock_holder, pipeline_lock
from ecom.warehouse import session
from orchestration.assets_ingest import A_FILE_EVERY_DAY, NO_REJECTED_FILES
from orchestration.assets_raw import missing_runs
from orchestration.checks import ALL_BALANCED, FRESHNESS_CHECK, QUARANTINE_SHARE
from orchestration.partitions import day_of, days_text, run_days

if TYPE_CHECKING:  # define_asset_job's return type is not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

NEW_FILES_SENSOR = "new_raw_files"
FAILURE_SENSOR = "alert_on_run_failure"
CHECKS_SENSOR = "alert_on_failed_checks"
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
    sha256: str  # '' for a file rejected before its bytes were read (its name, a link, no read
    # access), and for a `removed` entry
    finished_at: float  # epoch seconds
    status: str  # landed | rejected | removed


def files_by_day(raw_dir: Path, first: date, last: date) -> tuple[dict[str, list[RawFile]], list[RawFile]]:
    """The raw files of each day of first..last, and the entries whose name gives no day (a
    misnamed or misplaced file, a folder that cannot be read), which every load rejects. A
    misnamed file in an entity's day folder belongs to that day: only a load of that day lists
    the folder (a dated load does not search the folders of other days)."""
    days: dict[str, list[RawFile]] = {}
    undated: list[RawFile] = []
    for raw in discover(raw_dir, first, last) if raw_dir.is_dir() else []:
        if raw.file_date is None and (day := _folder_day(raw.relative)) and first <= day <= last:
            days.setdefault(day.isoformat(), []).append(raw)
        elif raw.file_date is None:
            undated.append(raw)
        elif first <= raw.file_date <= last:
            days.setdefault(raw.file_date.isoformat(), []).append(raw)
    return days, undated


def _folder_day(relative: str) -> date | None:
    """The day of the `<entity>/YYYY/MM/DD/` folder a path lies in, or None."""
    parts = relative.split("/")
    if len(parts) < 5 or parts[0] not in COLUMNS or not all(p.isdigit() for p in parts[1:4]):
        return None
    try:
        return date(int(parts[1]), int(parts[2]), int(parts[3]))
    except ValueError:
        return None


def signature(files: Iterable[RawFile]) -> str:
    """Changes when a file of the day appears, disappears, or is rewritten."""
    digest = hashlib.sha1(usedforsecurity=False)
    for raw in sorted(files, key=lambda f: f.relative):
        try:
            stat = raw.path.stat()
            digest.update(f"{raw.relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError as exc:  # gone since it was listed, or cannot be read
            digest.update(f"{raw.relative}\0{exc.errno}\n".encode())
    return digest.hexdigest()[:16]


def unlanded(files: Iterable[RawFile], ledger: Mapping[str, Logged], rewritten: bool = False) -> list[RawFile]:
    """Files the ingest log does not hold in their current version (landed or rejected; a file put
    back after its removal was logged is new again). A file of the size logged is read when it
    changed after it was logged, or with `rewritten` (a file of its day changed since the last
    look) whenever: a copy that kept its time (`cp -p`, `rsync -a`) is older than its landing."""
    pending = []
    for raw in files:
        logged = ledger.get(raw.relative)
        try:
            stat = raw.path.stat()
        except OSError:  # a load logs what it cannot read
            if logged is None:
                pending.append(raw)
            continue
        if logged is not None and logged.status == "rejected" and not logged.sha256:
            # Rejected for its name, as a link or as unreadable: a load rejects it again, unless
            # it can be read now.
            if inspect_file(raw).sha256:
                pending.append(raw)
        elif logged is None or logged.bytes != stat.st_size:
            pending.append(raw)
        elif (rewritten or stat.st_mtime > logged.finished_at) and _sha256_or_none(raw.path, stat) != logged.sha256:
            pending.append(raw)  # rewritten in place with the same size, or cannot be read now
    return pending


def _sha256_or_none(path: Path, stat: os.stat_result) -> str | None:
    """A regular file's sha256; None for one that cannot be read, or is not a file (reading a
    named pipe would wait forever): a load tells why."""
    if not file_stat.S_ISREG(stat.st_mode):
        return None
    try:
        return file_sha256(path)
    except OSError:
        return None


def ledger_mark(files: Iterable[RawFile], ledger: Mapping[str, Logged]) -> str:
    """What the ingest log holds of the files (their latest entries' times), for a run key: files
    put back as they were when a run was asked for them, after another version landed, ask for a
    run of a new key (Dagster starts one run per key, and the files' signature is the same)."""
    logged = [f"{raw.relative}@{ledger[raw.relative].finished_at}" for raw in files if raw.relative in ledger]
    if not logged:
        return ""
    return "~" + hashlib.sha1("\n".join(sorted(logged)).encode(), usedforsecurity=False).hexdigest()[:8]


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
                f"toUnixTimestamp64Milli(max(finished_at)), argMax(status, finished_at) FROM {LOG_TABLE} "
                "WHERE status IN ('landed', 'rejected', 'removed') GROUP BY file_path"
            ).result_rows
        except DatabaseError as exc:
            if "UNKNOWN_TABLE" in str(exc) or "UNKNOWN_DATABASE" in str(exc):
                return {}  # nothing has landed into this warehouse yet
            raise
    return {path: Logged(int(size), sha, millis / 1000, status) for path, size, sha, millis, status in rows}


# Runs of a day's files after the first that failed: a failure that lasts (a full disk) costs a
# few runs and alerts, not one a minute. A cancelled run is not run again.
RETRIES = 2


def _run_request(run: list[str], key: str) -> dg.RunRequest:
    """One day's partition, or a range of days (first, last) in one run."""
    tags = {"ecom/trigger": NEW_FILES_SENSOR}
    if run[0] == run[-1]:
        return dg.RunRequest(run_key=key, partition_key=run[0], tags=tags)
    return dg.RunRequest(run_key=key, tags={
        **tags, "dagster/asset_partition_range_start": run[0], "dagster/asset_partition_range_end": run[-1]})


def _run_key(run: list[str], signatures: Mapping[str, str]) -> str:
    """The day and its files' signature, or the range and a digest of its days' signatures ('-'
    for a day without files: the run that rejects the files that name no day, when no day has any)."""
    if len(run) == 1:
        return f"{run[0]}:{signatures.get(run[0], '-')}"
    digest = hashlib.sha1("".join(signatures.get(day, "-") for day in run).encode(),
                          usedforsecurity=False).hexdigest()
    return f"{run[0]}..{run[-1]}:{digest[:16]}"


def _retries(instance: dg.DagsterInstance, asked: dict[str, dict], log) -> list[dg.RunRequest]:
    """Follow the runs asked for (run key -> {days, attempt}): forget those that succeeded or were
    cancelled, and ask again, under a key of its own (Dagster starts one run per key), for one that
    failed, up to RETRIES times. Reads Dagster's run storage only, never the warehouse."""
    requests = []
    for key, ask in list(asked.items()):
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": key}), limit=1)
        if not runs or runs[0].status not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                                              dg.DagsterRunStatus.CANCELED):
            continue  # not started yet, or still going
        del asked[key]
        if runs[0].status != dg.DagsterRunStatus.FAILURE:
            continue
        days = ask["days"]
        if ask["attempt"] >= RETRIES:
            named = "..".join(dict.fromkeys(days))  # one day once
            log.warning(f"{named}: run {runs[0].run_id[:8]} failed, the last of {RETRIES + 1} attempts; "
                        "run them with a backfill, or new files of theirs start a run")
            continue
        retry = f"{key.split('#')[0]}#{ask['attempt'] + 1}"
        asked[retry] = {"days": days, "attempt": ask["attempt"] + 1}
        log.info(f"{'..'.join(dict.fromkeys(days))}: run {runs[0].run_id[:8]} failed; asking again "
                 f"(attempt {ask['attempt'] + 2} of {RETRIES + 1})")
        requests.append(_run_request(days, retry))
    return requests


def build_new_files_sensor(job: "UnresolvedAssetJobDefinition",
                           partitions_def: dg.TimeWindowPartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=NEW_FILES_SENSOR,
        job=job,
        minimum_interval_seconds=60,
        default_status=default_status(),
        description="Starts the daily pipeline for the days from ECOM_START_DATE to yesterday (UTC) whose raw "
                    "files in ECOM_RAW_DIR are not yet in bronze.ingest_log (consecutive days as one run of "
                    "their range; a file whose name gives no day goes with one whose load searches its folder, or "
                    "else with a run of the latest day with files, whose load rejects it); starts a failed run "
                    "again, twice at most; skips the tick while another process has the embedded warehouse.",
    )
    def new_raw_files(context: dg.SensorEvaluationContext):
        settings = Settings.from_env()
        if not settings.raw_dir.is_dir():
            return dg.SkipReason(f"raw directory {settings.raw_dir.resolve()} does not exist (ECOM_RAW_DIR)")
        last_key = partitions_def.get_last_partition_key()
        if last_key is None:
            return dg.SkipReason("no partition is open yet (ECOM_START_DATE is today or later)")
        first = day_of(partitions_def.get_first_partition_key())
        state = json.loads(context.cursor) if context.cursor else {}
        if "seen" not in state:  # a cursor of an earlier version: the day signatures alone
            state = {"seen": state, "asked": {}}
        seen: dict[str, str] = state["seen"]
        asked: dict[str, dict] = state["asked"]
        requests = _retries(context.instance, asked, context.log)

        def result(skip: str) -> dg.SensorResult:
            cursor = json.dumps(state, sort_keys=True, separators=(",", ":"))
            if requests:
                return dg.SensorResult(run_requests=requests, cursor=cursor)
            return dg.SensorResult(skip_reason=dg.SkipReason(skip), cursor=cursor)

        days, undated = files_by_day(settings.raw_dir, first, day_of(last_key))
        signatures = {day: signature(files) for day, files in days.items()}
        changed = sorted(day for day, sig in signatures.items() if seen.get(day) != sig)
        # Files that name no day: a run of this tick, or of the latest day with files, rejects them,
        # with their reason in the ingest log and the run's `no_rejected_files` check warning at once.
        undated_signature = signature(undated) if undated else None
        undated_changed = undated_signature is not None and state.get("undated") != undated_signature
        if undated_signature is None:
            state.pop("undated", None)
        if not changed and not undated_changed:
            return result(f"no new raw files in {settings.raw_dir.resolve()} ({len(days)} days seen)")
        # What changed, in words: "2 day(s) with changed files", "files that name no day", or both.
        what = " and ".join([f"{len(changed)} day(s) with changed files"] * bool(changed)
                            + ["files that name no day"] * undated_changed)
        try:
            ledger = read_ledger(settings)
        except WarehouseUnavailable as exc:
            return result(f"{exc}; {what} wait for the next tick")
        due: list[str] = []
        keyed = dict(signatures)  # per day, what its run key holds
        for day in changed:
            pending = unlanded(days[day], ledger, rewritten=day in seen)
            if pending:
                context.log.info(f"{day}: {len(pending)} file(s) not landed yet: "
                                 + ", ".join(raw.relative for raw in pending[:5]))
                due.append(day)
                keyed[day] += ledger_mark(pending, ledger)
            seen[day] = signatures[day]
        undated_day, undated_mark = None, ""
        if undated_changed:
            pending = unlanded(undated, ledger, rewritten="undated" in state)
            if pending:
                # With a run due anyway whose load searches their folders, it rejects them; else a
                # run of the latest day with files.
                latest = max(days) if days else last_key
                if due and all(searched_by_load(raw.relative, day_of(max(due)), day_of(max(due)))
                               for raw in pending):
                    latest = max(due)
                undated_day, undated_mark = latest, ledger_mark(pending, ledger)
                context.log.warning(
                    f"{len(pending)} file(s) whose name gives no day: "
                    + ", ".join(raw.relative for raw in pending[:5])
                    + f"; the run of {latest} rejects them (rename one as "
                    "<entity>/YYYY/MM/DD/<entity>_YYYYMMDD.csv to land it)")
                due = sorted({*due, latest})
            state["undated"] = undated_signature
        for start, count in missing_runs([date.fromisoformat(day) for day in due]):
            run = [(start + timedelta(days=i)).isoformat() for i in range(count)]
            key = _run_key(run, keyed)
            if undated_day in run:  # its days' files may be unchanged: a key Dagster has not seen
                key += f"+{undated_signature}{undated_mark}"
            asked[key] = {"days": [run[0], run[-1]], "attempt": 0}
            requests.append(_run_request(run, key))
        return result(f"{what}: every file already in {LOG_TABLE}")

    return new_raw_files


# -- alerts -----------------------------------------------------------------------------------


def _why(context: dg.RunFailureSensorContext) -> str | None:
    """Dagster's sentence on the run, then the first line of each failed step's error (at most
    three): "Steps failed: ['bronze_landing']" alone does not say why."""
    causes = []
    for event in context.get_step_failure_events()[:3]:
        data = event.step_failure_data
        error = data.error
        while error is not None and error.cause is not None:  # Dagster wraps the step's own error
            error = error.cause
        # A step that failed with dg.Failure (a held warehouse, dbt's failed nodes) says why in
        # its description; the error's message would start with the exception's class.
        described = data.user_failure_data.description if data.user_failure_data else None
        text = (described or (error.message if error is not None else "") or "").strip()
        if text:
            causes.append(f"{event.step_key}: {text.splitlines()[0][:600]}")
    message = context.failure_event.message
    return " ".join([message or "", *causes]).strip() or None


# The job Dagster runs a selection of assets or checks in when no job of the location is named
# (`IMPLICIT_ASSET_JOB_NAME` in dagster._core; a suffix per partitions definition may follow).
IMPLICIT_ASSET_JOB = "__ASSET_JOB"


def run_subject(run: dg.DagsterRun, checked: Iterable[dg.AssetKey] = (), shown: int = 3) -> str:
    """The job of a run, or for a run of Dagster's implicit asset job (`__ASSET_JOB`: the
    freshness sensor's checks, a materialization launched from the asset graph) what it ran:
    `assets silver/orders, ...` or `checks of bronze/orders, bronze/payments`, the first `shown`.
    A run that records no selection (one executed in process) is named by the assets of its
    `checked` checks."""
    if not run.job_name.startswith(IMPLICIT_ASSET_JOB):
        return run.job_name
    assets = sorted(key.to_user_string() for key in run.asset_selection or ())
    checks = sorted({key.asset_key.to_user_string() for key in run.asset_check_selection or ()}
                    or {key.to_user_string() for key in checked})
    names, kind = (assets, "assets") if assets else (checks, "checks of")
    if not names:
        return run.job_name
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{kind} {', '.join(names[:shown])}{more}"


def alert_payload(run: dg.DagsterRun, error: str | None, status: str = "failure",
                  checked: Iterable[dg.AssetKey] = ()) -> dict[str, str | None]:
    days = run_days(run.tags)
    partition = days_text(days) if days else None
    base = os.environ.get(UI_URL_ENV, "http://127.0.0.1:3000").rstrip("/")
    what = run_subject(run, checked) + (f" for {partition}" if partition else "")
    outcome = "failed" if status == "failure" else "succeeded with failed checks"
    return {
        "text": f"ecom pipeline run {outcome}: {what} (run {run.run_id[:8]}): {error or 'no error message'}",
        "status": status,
        "job": run.job_name,
        "run_id": run.run_id,
        "partition": partition,
        "error": error,
        "url": f"{base}/runs/{run.run_id}",
    }


# The checks that alert when they fail in a run that succeeded: the project's own, which look at
# the run's days or the feeds' age and each ask for someone to act (a rejected file to fix or
# remove, a missing export, a day with too many bad rows, a stopped feed). dbt's tests of
# severity warn are left to the UI and to `dbt build`'s summary: they flag the exports' known
# dirt (prices off by 100x, ...) over all history, so they would alert on every run.
ALERTED_CHECKS = frozenset({NO_REJECTED_FILES, A_FILE_EVERY_DAY, QUARANTINE_SHARE, ALL_BALANCED, FRESHNESS_CHECK})


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> tuple[str, list[dg.AssetKey]] | None:
    """One line per check of ALERTED_CHECKS that did not pass in the run (`bronze/ingest_log
    no_rejected_files (WARN): 1 file(s) ...`; at most five, then how many more), and the checks'
    assets; None if none."""
    lines, assets = [], []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.passed or evaluation.check_name not in ALERTED_CHECKS:
            continue
        said = (evaluation.description or "").strip().splitlines()
        assets.append(evaluation.asset_key)
        lines.append(f"{evaluation.asset_key.to_user_string()} {evaluation.check_name} "
                     f"({evaluation.severity.value})" + (f": {said[0][:300]}" if said else ""))
    if not lines:
        return None
    more = f"; and {len(lines) - 5} more" if len(lines) > 5 else ""
    return f"{len(lines)} check(s) did not pass: " + "; ".join(lines[:5]) + more, assets


def webhook_url(environ: Mapping[str, str] | None = None) -> str | None:
    """ECOM_ALERT_WEBHOOK, checked when the code location loads rather than when a run has failed
    (urllib would open a file:// URL, and refuse one without a scheme, only then)."""
    url = (os.environ if environ is None else environ).get(WEBHOOK_ENV, "").strip()
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # Not the URL itself: a webhook's path is its secret.
        found = f"starts with {parts.scheme}://" if parts.scheme else "has no scheme"
        raise SettingError(f"{WEBHOOK_ENV} is not an http:// or https:// URL (it {found}): set it to the address "
                           "the alerts are POSTed to, or unset it")
    return url


def post_json(url: str, payload: Mapping[str, object], timeout: float = 10.0) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "ecom-alerts"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def _deliver(context: dg.RunStatusSensorContext, payload: Mapping[str, object]) -> None:
    url = webhook_url()
    if not url:
        return
    try:
        status = post_json(url, payload)
    except (OSError, ValueError) as exc:  # ValueError: not a URL urllib can open ("unknown url type")
        # The log line stays; raising marks the sensor's tick as failed in the UI, so an
        # unreachable webhook is seen (Dagster moves on to the next run either way).
        context.log.error(f"could not deliver the alert to {WEBHOOK_ENV}: {exc}")
        raise
    context.log.info(f"alert delivered to {WEBHOOK_ENV} (HTTP {status})")


@dg.run_failure_sensor(
    name=FAILURE_SENSOR,
    default_status=default_status(),
    description="Logs every failed run and POSTs a JSON alert to ECOM_ALERT_WEBHOOK when it is set.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
    payload = alert_payload(context.dagster_run, _why(context))
    context.log.error(payload["text"])
    _deliver(context, payload)


@dg.run_status_sensor(
    name=CHECKS_SENSOR,
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=default_status(),
    description="Logs every run that succeeded with one of the project's own checks failed (a rejected "
                "raw file, a missing export, too many quarantined rows, a stale feed; not dbt's warn tests) "
                "and POSTs a JSON alert to ECOM_ALERT_WEBHOOK when it is set.",
)
def alert_on_failed_checks(context: dg.RunStatusSensorContext) -> None:
    failed = failed_checks(context.instance, context.dagster_run.run_id)
    if failed is None:
        return
    text, assets = failed
    payload = alert_payload(context.dagster_run, text, status="failed_checks", checked=assets)
    context.log.warning(payload["text"])
    _deliver(context, payload)
