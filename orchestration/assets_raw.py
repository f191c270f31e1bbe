"""The raw exports of a day: what the source systems deliver into ECOM_RAW_DIR.

A day whose files are already there (delivered by the sources, or written by an earlier run)
is only recorded. A day with neither files nor a simulator manifest is written by the source
simulator (`ecom.generate`), so a demo world grows day by day; later days continue the same
world, and the simulator is deterministic, so re-running a day changes nothing. It writes only
into a folder it owns: one holding its manifests (`_manifest/`), or a missing or empty one
beside a warehouse that has landed nothing yet (a mistyped or unmounted ECOM_RAW_DIR must not
fill a warehouse of real data with invented rows). In a folder of real exports (no manifests),
or with ECOM_SIMULATOR=off, a missing day fails the step instead.
"""

import json
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from ecom.config import env_flag
from ecom.contract import ENTITIES
from ecom.generate import MANIFEST_DIR, claim_path, generate
from ecom.load import LOG_TABLE, RawFile, discover
from orchestration.partitions import BACKFILL_POLICY, days_of
from orchestration.resources import Warehouse

RAW_EXPORTS = dg.AssetKey(["raw", "exports"])
SIMULATOR_ENV = "ECOM_SIMULATOR"


class RawExportsConfig(dg.Config):
    """World parameters for a new demo world; an existing world keeps its own (from its manifests)."""

    orders_per_day: int = 1000
    seed: int = 42
    dirty_rate: float = 0.02


def simulator_enabled(environ: dict[str, str] | None = None) -> bool:
    return env_flag(SIMULATOR_ENV, True, environ)


def simulated_world(raw_dir: Path) -> bool:
    """Whether the simulator may write into `raw_dir`: it is empty or missing, or the simulator
    wrote it (its manifests are there). Real exports have no manifests: a late export must not be
    replaced by invented rows at its path. (An empty or missing folder is written only beside a
    warehouse that has landed nothing: `landed_files`.)"""
    if (raw_dir / MANIFEST_DIR).is_dir():
        return True
    try:
        return not any(not entry.name.startswith(".") for entry in raw_dir.iterdir())  # `.gitkeep`, `.DS_Store`
    except FileNotFoundError:
        return True


def landed_files(warehouse: Warehouse) -> int:
    """How many files the warehouse's ingest log lists as landed (0 for a new warehouse)."""
    current = warehouse.settings
    if current.embedded and not current.chdb_path.exists():
        return 0  # not created (nor locked) by this step: the landing makes it
    with warehouse.session() as client:
        if not client.command(f"EXISTS TABLE {LOG_TABLE}"):
            return 0
        return int(client.command(f"SELECT count() FROM {LOG_TABLE} WHERE status = 'landed'"))


def _manifest_path(raw_dir: Path, day: date) -> Path:
    return raw_dir / MANIFEST_DIR / f"manifest_{day:%Y%m%d}.json"


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def world_parameters(raw_dir: Path, before: date, config: RawExportsConfig) -> dict[str, float | int]:
    """The parameters of the world the day continues: those of the latest earlier manifest, else config."""
    folder = raw_dir / MANIFEST_DIR
    earlier = sorted(p for p in folder.glob("manifest_*.json") if p.stem[-8:] < f"{before:%Y%m%d}") \
        if folder.is_dir() else []
    manifest = _read_manifest(earlier[-1]) if earlier else None
    if manifest:
        return {"orders_per_day": int(manifest["orders_per_day"]), "seed": int(manifest["seed"]),
                "dirty_rate": float(manifest["dirty_rate"])}
    return {"orders_per_day": config.orders_per_day, "seed": config.seed, "dirty_rate": config.dirty_rate}


def missing_runs(days: list[date]) -> list[tuple[date, int]]:
    """Consecutive days as (first day, number of days), one simulator call each."""
    runs: list[tuple[date, int]] = []
    for day in sorted(days):
        if runs and runs[-1][0] + timedelta(days=runs[-1][1]) == day:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((day, 1))
    return runs


def _files_by_day(raw_dir: Path, first: date, last: date) -> dict[date, list[RawFile]]:
    found: dict[date, list[RawFile]] = {}
    for raw in discover(raw_dir, first, last) if raw_dir.is_dir() else []:
        if raw.file_date is not None and first <= raw.file_date <= last:
            found.setdefault(raw.file_date, []).append(raw)
    return found


def build_raw_exports(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=RAW_EXPORTS,
        group_name="raw",
        kinds={"csv", "python"},
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        description=__doc__,
    )
    def raw_exports(context: dg.AssetExecutionContext, config: RawExportsConfig,
                    warehouse: Warehouse) -> dg.MaterializeResult:
        raw_dir = warehouse.settings.raw_dir
        first, last = days_of(context)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        present = _files_by_day(raw_dir, first, last)
        # A day with neither files nor manifest, or one a stopped simulation left half written.
        stopped = [day for day in days if claim_path(raw_dir, day).exists()]
        missing = [day for day in days
                   if day in stopped or (day not in present and not _manifest_path(raw_dir, day).exists())]
        if stopped and not simulator_enabled():
            raise dg.Failure(
                f"{', '.join(map(str, stopped))} in {raw_dir.resolve()} half written by a generator run that was "
                f"stopped ({claim_path(raw_dir, stopped[0]).name} in {MANIFEST_DIR}/); write the day again with "
                f"`ecom generate --start {stopped[0]} --days 1` and its world's options"
            )
        if missing and not simulator_enabled():
            raise dg.Failure(
                f"no raw exports in {raw_dir.resolve()} for {', '.join(map(str, missing))}; they have not "
                f"arrived yet ({SIMULATOR_ENV} is off, so the simulator does not write them)"
            )
        if missing and not simulated_world(raw_dir):
            raise dg.Failure(
                f"no raw exports in {raw_dir.resolve()} for {', '.join(map(str, missing))}; they have not "
                f"arrived yet. The folder holds real exports (no {MANIFEST_DIR}/ of the simulator), so the "
                "simulator does not write into it; run the partition again once the files are there"
            )
        if missing and not (raw_dir / MANIFEST_DIR).is_dir() and (landed := landed_files(warehouse)):
            state = "is empty" if raw_dir.is_dir() else "does not exist"
            raise dg.Failure(
                f"{raw_dir.resolve()} {state}, but the warehouse has landed {landed} files: the simulator "
                "starts a new world only beside a new warehouse, never among landed data. Check ECOM_RAW_DIR "
                "(the exports' folder: mistyped, or not mounted?); for a new demo world, point ECOM_CHDB_PATH "
                "at a new warehouse too"
            )
        written: list[str] = []
        for start, count in missing_runs(missing):
            params = world_parameters(raw_dir, start, config)
            context.log.info(f"simulating {count} day(s) from {start} into {raw_dir} with {params}")
            try:
                generate(raw_dir, start=start, days=count, progress=False, **params)
            except ValueError as exc:
                raise dg.Failure(f"the source simulator cannot write {start}: {exc}") from None
            written += [str(start + timedelta(days=i)) for i in range(count)]
        present = _files_by_day(raw_dir, first, last)
        files = [raw for day in days for raw in present.get(day, [])]
        rows = {entity: 0 for entity in ENTITIES}
        for day in days:
            manifest = _read_manifest(_manifest_path(raw_dir, day)) or {}
            for entity, counts in manifest.get("entities", {}).items():
                rows[entity] = rows.get(entity, 0) + int(counts.get("rows", 0))
        metadata: dict[str, object] = {
            "raw_dir": dg.MetadataValue.path(str(raw_dir.resolve())),
            "files": len(files),
            "bytes": sum(raw.path.stat().st_size for raw in files),
            "days_simulated": ", ".join(written) or "none (the exports were there)",
        }
        if first != last:  # a range run's figures are the range's, shown on each of its days
            metadata["days"] = f"{first}..{last}"
        if any(rows.values()):  # the simulator's manifests count rows; delivered files are not read here
            metadata["rows_by_entity"] = dg.MetadataValue.json(rows)
            # A range's total as `dagster/row_count` would be shown as the row count of each day.
            metadata["dagster/row_count" if first == last else "rows_of_the_days"] = sum(rows.values())
        return dg.MaterializeResult(metadata=metadata)

    return raw_exports
