"""The daily pipeline job: raw exports -> bronze landing -> dbt build -> dashboard, one day a run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # define_asset_job's return type is not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

DAILY_JOB = "daily_pipeline"


def executor(embedded: bool) -> dg.ExecutorDefinition:
    """Steps one after another in the run's process on the embedded target; in parallel otherwise."""
    return dg.in_process_executor if embedded else dg.multiprocess_executor


def build_daily_job(embedded: bool, freshness_checks: list[dg.AssetChecksDefinition]) -> UnresolvedAssetJobDefinition:
    """Every asset but the freshness checks; partitioned by day as its assets are (Dagster infers it)."""
    selection = dg.AssetSelection.all()
    if freshness_checks:  # evaluated by their own sensor, on the clock rather than with the data
        selection = selection - dg.AssetSelection.checks(*freshness_checks)
    return dg.define_asset_job(
        DAILY_JOB,
        selection=selection,
        executor_def=executor(embedded),
        description="One day (or a range, in one run): simulate or pick up the raw exports, land them "
                    "in bronze, `dbt build` the increments of silver and gold with their tests, refresh "
                    "the dashboard.",
    )
