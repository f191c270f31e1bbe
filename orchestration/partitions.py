"""Daily partitions: one partition is one day of raw exports (the `YYYY/MM/DD` of their path).

A partition run lands that day's files and builds that day's increments; a range runs as one
run (`BackfillPolicy.single_run()`), since landing and `dbt build` cost little more for ten
days than for one.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from datetime import date, datetime, timedelta

import dagster as dg

from ecom.config import DEMO_START, SettingError, unpriced_start_problem

START_DATE_ENV = "ECOM_START_DATE"


def start_date(environ: dict[str, str] | None = None) -> date:
    """First partition: ECOM_START_DATE (YYYY-MM-DD), the demo's first day when unset. A day before the
    FX seed's rates is refused as the code location loads: silver would quarantine every order
    of the partitions before it."""
    value = ((os.environ if environ is None else environ).get(START_DATE_ENV) or "").strip()
    if not value:
        return DEMO_START
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise SettingError(f"{START_DATE_ENV}={value!r} is not a date like 2026-09-01") from None
    if problem := unpriced_start_problem(day, f"{START_DATE_ENV}={value}"):
        raise SettingError(problem)
    return day


def daily_partitions(first_day: date | None = None) -> dg.DailyPartitionsDefinition:
    """UTC days from the start date to yesterday (a day's partition opens once the day is over)."""
    return dg.DailyPartitionsDefinition(start_date=(first_day or start_date()).isoformat(), timezone="UTC")


BACKFILL_POLICY = dg.BackfillPolicy.single_run()
# A backfill of a range is one run (one load, one dbt build): the point of the daily assets. The
# asset parameter is still marked beta in Dagster 1.13, which said so a dozen times on every load
# of the code location and in every step's log.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


def days_of(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> tuple[date, date]:
    """First and last day (inclusive) of the partition or partition range a step runs for."""
    window = context.partition_time_window
    first = window.start.date()
    last = (window.end - timedelta(days=1)).date()
    return first, last


def day_of(key: str) -> date:
    return datetime.strptime(key, "%Y-%m-%d").date()


def run_days(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """(first, last) day of a run's daily partition or partition range, from its tags (what a step
    that is not partitioned itself, or a sensor, knows of it); None for a run of no partition."""
    if day := tags.get("dagster/partition"):
        return day, day
    first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    return (first, last) if first and last else None


def days_text(days: tuple[str, str]) -> str:
    """`2026-09-02`, or `2026-09-01..2026-09-03` for a range."""
    return days[0] if days[0] == days[1] else f"{days[0]}..{days[1]}"
