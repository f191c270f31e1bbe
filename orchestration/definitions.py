"""The code location: assembles what the other modules of `orchestration` define.

    dagster dev -m orchestration.definitions      (what `make dev` runs)

The definitions are built when the code location loads, from the environment of that moment
(`ecom.config.Settings`: DBT_TARGET, ECOM_RAW_DIR, ECOM_CHDB_PATH; ECOM_START_DATE for the
partitions), and from the dbt manifest, which is parsed first when it is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from orchestration.assets_dbt import build_dbt_assets, dashboard_inputs, dashboard_owners
from orchestration.assets_ingest import build_landing
from orchestration.assets_raw import build_raw_exports, simulator_enabled
from orchestration.assets_report import build_dashboard
from orchestration.checks import build_freshness_checks, build_freshness_sensor, build_quality_checks
from orchestration.jobs import build_daily_job, executor
from orchestration.partitions import daily_partitions
from orchestration.resources import WAREHOUSE_POOL, Warehouse, dbt_project, dbt_resource, settings
from orchestration.schedules import build_daily_schedule
from orchestration.sensors import (
    alert_on_failed_checks,
    alert_on_run_failure,
    build_new_files_sensor,
    default_status,
    webhook_url,
)


def build_definitions(project_dir: Path | None = None) -> dg.Definitions:
    """Everything of the code location; `project_dir` points at another copy of the dbt project."""
    current = settings()
    simulator_enabled()  # a bad ECOM_SIMULATOR stops the code location, not the first run missing a day
    webhook_url()  # and a bad ECOM_ALERT_WEBHOOK, not the first failed run
    pool = WAREHOUSE_POOL
    partitions = daily_partitions()
    project = dbt_project(project_dir)
    manifest = json.loads(project.manifest_path.read_text(encoding="utf-8"))

    raw_exports = build_raw_exports(partitions)
    landing = build_landing(manifest, partitions, pool)
    dbt_assets = build_dbt_assets(project, manifest, partitions, pool)
    dashboard = build_dashboard(dashboard_inputs(manifest, dbt_assets), dashboard_owners(manifest),
                                partitions, pool)
    quality_checks = build_quality_checks(pool, dbt_assets.keys)
    freshness_checks = build_freshness_checks(manifest)

    daily_job = build_daily_job(current.embedded, freshness_checks)
    return dg.Definitions(
        assets=[raw_exports, landing, dbt_assets, dashboard],
        asset_checks=[*quality_checks, *freshness_checks],
        jobs=[daily_job],
        schedules=[build_daily_schedule(daily_job)],
        sensors=[
            build_new_files_sensor(daily_job, partitions),
            alert_on_run_failure,
            alert_on_failed_checks,
            *build_freshness_sensor(freshness_checks, default_status()),
        ],
        resources={"warehouse": Warehouse(), "dbt": dbt_resource(project, current)},
        executor=executor(current.embedded),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
