"""The nightly schedule: at 02:00 UTC, run the daily pipeline for the day that just ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from orchestration.sensors import default_status

if TYPE_CHECKING:  # define_asset_job's return type is not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

SCHEDULE = "daily_pipeline_schedule"


def build_daily_schedule(job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    running = default_status() == dg.DefaultSensorStatus.RUNNING
    return dg.build_schedule_from_partitioned_job(
        job,
        name=SCHEDULE,
        hour_of_day=2,
        minute_of_hour=0,
        description="02:00 UTC: land and build the previous day (its partition).",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
    )
