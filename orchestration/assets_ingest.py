"""Bronze landing: the loader (`ecom.load`) lands a day's raw files, one asset per bronze table.

The asset keys are those of the dbt sources `bronze.<table>`, so dbt models hang off the
landing assets and the lineage runs raw exports -> bronze -> silver. Landing is exactly once
by checksum, so re-running a partition lands nothing new. A file that cannot be parsed is
rejected whole and logged in `bronze.ingest_log`; the good files still land and the check
`no_rejected_files` warns, on every run of the partition, until each rejected file still in the
raw directory is fixed (and lands) or removed; a rejected file whose name gives no day (misnamed
or misplaced) belongs to no partition, so it is named by every run until then.
"""

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from clickhouse_connect.driver.client import Client

from ecom.contract import COLUMNS, ENTITIES, LINEAGE
from ecom.load import (
    LOG_COLUMNS,
    LOG_TABLE,
    FileOutcome,
    discover,
    file_sha256,
    latest_rejections,
    load,
    plain_folder,
    raw_dir_problem,
)
from orchestration.assets_raw import RAW_EXPORTS
from orchestration.partitions import BACKFILL_POLICY, START_DATE_ENV, day_of, days_of, start_date
from orchestration.resources import Warehouse

INGEST_LOG = "ingest_log"
LANDED_TABLES: tuple[str, ...] = (*ENTITIES, INGEST_LOG)
NO_REJECTED_FILES = "no_rejected_files"
A_FILE_EVERY_DAY = "a_file_every_day"
# The time Dagster's freshness checks take for an asset's last update, when its materialization has it.
LAST_UPDATED = "dagster/last_updated_timestamp"


def landing_key(table: str) -> dg.AssetKey:
    """Asset key of a bronze table; the dbt source `bronze.<table>` maps to it."""
    return dg.AssetKey(["bronze", table])


def _sources(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {source["name"]: source for source in manifest.get("sources", {}).values()
            if source.get("source_name") == "bronze"}


def column_schema(table: str, source: Mapping[str, Any]) -> dg.TableSchemaMetadataValue:
    """The columns of a bronze table as the loader makes them, described as the dbt source is (the
    dbt assets show theirs from the models' contracts)."""
    typed = LOG_COLUMNS if table == INGEST_LOG else (*((c, "String") for c in COLUMNS[table]), *LINEAGE)
    described = source.get("columns") or {}
    return dg.MetadataValue.table_schema(dg.TableSchema(columns=[
        dg.TableColumn(name, column_type, description=(described.get(name) or {}).get("description") or None)
        for name, column_type in typed]))


def _still_there(path: Path, sha256: str) -> bool:
    """Whether a rejected file is still in the raw directory as it was rejected: the same bytes,
    or, for what was rejected unread (a name, a link, a folder, no permission), still there at all."""
    if not os.path.lexists(path):
        return False
    if plain_folder(path) and not path.name.lower().endswith(".csv"):
        return False  # a day folder rejected as unreadable or as a link, a plain folder now: its files count
    if not sha256 or path.is_symlink() or not path.is_file() or not os.access(path, os.R_OK):
        return True  # rejected before its bytes were read (its name, a link, no permission): there it is
    return file_sha256(path) == sha256


def _a_file_every_day(entity: str, exported: set[date], first: date, last: date) -> dg.AssetCheckResult:
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    missing = [day.isoformat() for day in days if day not in exported]
    return dg.AssetCheckResult(
        check_name=A_FILE_EVERY_DAY, asset_key=landing_key(entity), passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"no {entity} export for {len(missing)} day(s) of {first}..{last}: "
                     + ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
                     if missing else f"an export of {entity} for every day of {first}..{last}"),
        metadata={"days_without_a_file": dg.MetadataValue.json(missing)},
    )


def _no_rejected_files(failing: list[tuple[str, str, str]], rejected_here: int, first: date,
                       last: date) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=NO_REJECTED_FILES,
        asset_key=landing_key(INGEST_LOG),
        passed=not failing,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"{len(failing)} file(s) of {first}..{last} or of no day stay rejected ({rejected_here} in "
                     "this run): " + ", ".join(f"{path} ({reason})" for path, reason, _ in failing[:3])
                     + (", ..." if len(failing) > 3 else "") + "; see bronze.ingest_log" if failing
                     else "no file of the partition, nor of no day, is still as it was rejected"),
        metadata={"rejected": dg.MetadataValue.json(
            [{"file": path, "reason": reason, "detail": detail} for path, reason, detail in failing]
        )},
    )


def _still_rejected(client: Client, raw_dir: Path, first: date, last: date) -> list[tuple[str, str, str]]:
    """Files of the window, or of no day, whose latest log entry is a rejection and that still
    hold the rejected bytes (a file fixed since, landed or restored to bytes already landed, or
    removed, no longer counts)."""
    return [(r.path, r.reason, r.error) for r in latest_rejections(client)
            if (r.file_date is None or first <= r.file_date <= last) and _still_there(raw_dir / r.path, r.sha256)]


def _last_updated(newest_at: datetime | None) -> dict[str, dg.MetadataValue]:
    """The metadata Dagster's last-update freshness checks read instead of the materialization's
    own time. Before a first file has landed: the epoch's first second, so that the check fails
    (without the key, or at 0, it would take the materialization's time)."""
    return {LAST_UPDATED: dg.MetadataValue.timestamp(newest_at.timestamp() if newest_at else 1.0)}


def build_landing(manifest: Mapping[str, Any], partitions_def: dg.PartitionsDefinition,
                  pool: str | None) -> dg.AssetsDefinition:
    sources = _sources(manifest)
    specs = [
        dg.AssetSpec(
            key=landing_key(table),
            deps=[RAW_EXPORTS],
            group_name="bronze",
            kinds={"clickhouse"},
            description=sources.get(table, {}).get("description") or f"bronze.{table} as landed by `ecom load`.",
            metadata={"dagster/table_name": f"bronze.{table}",
                      "dagster/column_schema": column_schema(table, sources.get(table, {}))},
        )
        for table in LANDED_TABLES
    ]

    @dg.multi_asset(
        name="bronze_landing",
        specs=specs,
        check_specs=[dg.AssetCheckSpec(
            NO_REJECTED_FILES, asset=landing_key(INGEST_LOG),
            description="No raw file of the partition, nor one whose name gives no day, is still in the raw "
                        "directory as it was rejected (fixed and landed, or removed); bronze.ingest_log "
                        "keeps every rejection's reason.",
        ), *(dg.AssetCheckSpec(
            A_FILE_EVERY_DAY, asset=landing_key(entity),
            description=f"Every day of the partition has an export of {entity} (the source sends one a day): "
                        "warns naming the days without one, as when a feed stopped.",
        ) for entity in ENTITIES)],
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        pool=pool,
        can_subset=True,
    )
    def bronze_landing(context: dg.AssetExecutionContext, warehouse: Warehouse):
        # A check executed on its own (the UI's "Execute") may have no partition: every day then.
        if context.has_partition_key_range or context.has_partition_key:
            first, last = days_of(context)
        elif (last_key := partitions_def.get_last_partition_key()) is None:
            raise dg.Failure(description=f"No day to check yet: the first partition, {START_DATE_ENV}="
                                         f"{start_date().isoformat()}, opens once that day is over.")
        else:
            first, last = day_of(partitions_def.get_first_partition_key()), day_of(last_key)
        settings = warehouse.settings
        if problem := raw_dir_problem(settings.raw_dir):
            raise dg.Failure(description=problem)
        selected = context.selected_asset_keys
        checks = context.selected_asset_check_keys
        if not selected:
            # Checks alone: evaluated from the files and the ingest log of the window; nothing lands.
            listed = discover(settings.raw_dir, first, last)
            for entity in ENTITIES:
                if dg.AssetCheckKey(landing_key(entity), A_FILE_EVERY_DAY) in checks:
                    yield _a_file_every_day(entity, {r.file_date for r in listed if r.entity == entity}, first, last)
            if dg.AssetCheckKey(landing_key(INGEST_LOG), NO_REJECTED_FILES) in checks:
                with warehouse.session() as client:
                    yield _no_rejected_files(_still_rejected(client, settings.raw_dir, first, last), 0, first, last)
            return
        # One bronze table picked alone lands only its entity's files; the ingest log, which every
        # landing writes, lands them all.
        entities = [e for e in ENTITIES if landing_key(e) in selected]
        files = None if landing_key(INGEST_LOG) in selected or len(entities) == len(ENTITIES) else [
            raw for raw in discover(settings.raw_dir, first, last) if raw.entity in entities]

        def on_file(outcome: FileOutcome) -> None:
            line = f"{outcome.status} {outcome.file.relative}"
            if outcome.status == "landed":
                note = f" ({outcome.detail})" if outcome.detail else ""
                context.log.info(f"{line}: {outcome.rows:,} rows{note}")
            elif outcome.status == "rejected":
                context.log.warning(f"{line}: {outcome.reason}: {outcome.detail}")
            else:
                context.log.debug(f"{line}: {outcome.detail}")

        with warehouse.session() as client:
            result = load(settings, client, first, last, on_file=on_file, files=files)
            totals = {table: int(client.command(f"SELECT count() FROM bronze.`{table}`"))
                      for table in LANDED_TABLES}
            # Read for the ingest log's check only.
            still_rejected = ([] if landing_key(INGEST_LOG) not in selected
                              else _still_rejected(client, settings.raw_dir, first, last))
            # The rows of the window's days, and when each entity's newest file landed: what the
            # freshness checks read (as dbt's source freshness reads `_ingested_at`), not when this
            # step ran, so a run that lands nothing of an entity (its feed stopped) leaves it as it was.
            logged = client.query(
                "SELECT entity, sumIf(rows, file_date BETWEEN {first:Date} AND {last:Date}), max(finished_at) "
                "FROM " + LOG_TABLE + " WHERE status = 'landed' GROUP BY entity",
                parameters={"first": first, "last": last},
            ).result_rows
            in_window = {str(entity): int(rows) for entity, rows, _ in logged}
            newest = {str(entity): newest_at.replace(tzinfo=UTC) for entity, _, newest_at in logged}
        context.log.info(
            f"{first}..{last}: landed {len(result.landed)} files ({result.rows:,} rows), "
            f"rejected {len(result.rejected)}, skipped {len(result.skipped)} on {settings.describe()}"
        )

        for entity in entities:
            mine = [o for o in result.outcomes if o.file.entity == entity]
            landed = [o for o in mine if o.status == "landed"]
            yield dg.MaterializeResult(asset_key=landing_key(entity), metadata={
                "files_landed": len(landed),
                "rows_landed": sum(o.rows for o in landed),
                "files_rejected": sum(o.status == "rejected" for o in mine),
                "files_skipped": sum(o.status == "skipped" for o in mine),
                **_window_rows(first, last, in_window.get(entity, 0)),
                "dagster/row_count": totals[entity],
                **_last_updated(newest.get(entity)),
            })
            if dg.AssetCheckKey(landing_key(entity), A_FILE_EVERY_DAY) in checks:
                yield _a_file_every_day(entity, {o.file.file_date for o in mine}, first, last)
        if landing_key(INGEST_LOG) not in selected:
            return
        rejected = result.rejected
        failing = still_rejected
        yield dg.MaterializeResult(asset_key=landing_key(INGEST_LOG), metadata={
            "files_landed": len(result.landed),
            "rows_landed": result.rows,
            "files_rejected": len(rejected),
            "files_skipped": len(result.skipped),
            "orphan_rows_removed": result.orphan_rows_removed,
            "dagster/row_count": totals[INGEST_LOG],
            **_last_updated(max(newest.values(), default=None)),
        })
        yield _no_rejected_files(failing, len(rejected), first, last)

    return bronze_landing


def _window_rows(first: date, last: date, rows: int) -> dict[str, object]:
    """The rows the ingest log holds of the run's days: a day's partition row count, or, for a
    range run (one run of a backfill), a figure of the whole range, which Dagster would otherwise
    show on every day of it."""
    if first == last:
        return {"dagster/partition_row_count": rows}
    return {"days": f"{first}..{last}", "rows_of_the_days": rows}
