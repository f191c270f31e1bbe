"""Checks Dagster runs beside the dbt tests (which arrive as asset checks through dagster-dbt).

* reconciliation: every row of silver.reconciliation is balanced (bronze rows = silver rows +
  duplicates + superseded versions + quarantined rows, per entity and day). Blocking: the
  dashboard is not refreshed from numbers that do not add up.
* quarantine share: per entity, quarantined rows / bronze rows stays at or under
  ECOM_QUARANTINE_MAX_SHARE (default 0.25). A warning: the rows are kept in quarantine.
* freshness of the landing: the thresholds of each bronze source's dbt freshness (`error_after`,
  else `warn_after`) as a Dagster last-update check on its landing asset: it fails when the
  entity's newest file landed longer ago than that. Each landing run records that time (from
  the ingest log) on its materialization, which the check reads from Dagster's event log: a run
  that lands nothing of an entity leaves its time as it was, as `dbt source freshness` (which
  reads `_ingested_at` in the warehouse) would; a landing by `ecom run` counts from the next
  landing run in Dagster.
"""

import warnings
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg

from ecom.config import env_number
from ecom.contract import ENTITIES
from orchestration.assets_dbt import RECONCILIATION
from orchestration.assets_ingest import landing_key
from orchestration.partitions import days_text, run_days
from orchestration.resources import Warehouse

QUARANTINE_SHARE = "quarantine_share"
ALL_BALANCED = "all_balanced"
# The name dagster's build_last_update_freshness_checks gives each of its checks.
FRESHNESS_CHECK = "freshness_check"
MAX_SHARE_ENV = "ECOM_QUARANTINE_MAX_SHARE"
DEFAULT_MAX_SHARE = 0.25


def quarantine_key(entity: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", f"quarantine_{entity}"])


def max_quarantine_share(environ: Mapping[str, str] | None = None) -> float:
    return env_number(MAX_SHARE_ENV, DEFAULT_MAX_SHARE, 0, 1, "a share between 0 and 1", environ)


def quarantine_verdicts(counts: Mapping[str, tuple[int, int]],
                        threshold: float) -> dict[str, tuple[bool, float]]:
    """entity -> (passed, share) from entity -> (quarantined rows, bronze rows)."""
    verdicts = {}
    for entity, (quarantined, bronze) in counts.items():
        share = quarantined / bronze if bronze else 0.0
        verdicts[entity] = (share <= threshold, share)
    return verdicts


def build_quality_checks(pool: str | None,
                         asset_keys: Iterable[dg.AssetKey]) -> list[dg.AssetChecksDefinition]:
    """The reconciliation and quarantine checks, for those of their assets the dbt project has."""
    max_quarantine_share()  # a bad value stops the code location here, not every run at its end
    present = set(asset_keys)
    checks: list[dg.AssetChecksDefinition] = []

    if RECONCILIATION in present:
        @dg.asset_check(asset=RECONCILIATION, name=ALL_BALANCED, blocking=True, pool=pool,
                        description="Every entity and day of silver.reconciliation is balanced.")
        def all_balanced(warehouse: Warehouse) -> dg.AssetCheckResult:
            with warehouse.session() as client:
                total, unbalanced = client.query(
                    "SELECT count(), countIf(NOT is_balanced) FROM silver.reconciliation"
                ).result_rows[0]
                examples = client.query(
                    "SELECT entity, toString(file_date), bronze_rows, silver_rows, duplicate_rows, "
                    "superseded_rows, quarantined_rows FROM silver.reconciliation WHERE NOT is_balanced "
                    "ORDER BY file_date, entity LIMIT 20"
                ).result_rows
            names = ("entity", "file_date", "bronze", "silver", "duplicates", "superseded", "quarantined")
            return dg.AssetCheckResult(
                passed=bool(total) and not unbalanced,
                severity=dg.AssetCheckSeverity.ERROR,
                description=(f"{unbalanced} of {total} entity-days do not balance" if unbalanced
                             else f"all {total} entity-days balance" if total
                             else "silver.reconciliation is empty"),
                metadata={"entity_days": int(total), "unbalanced": int(unbalanced),
                          "unbalanced_examples": dg.MetadataValue.json([dict(zip(names, row, strict=True))
                                                                        for row in examples])},
            )

        checks.append(all_balanced)

    entities = [e for e in ENTITIES if quarantine_key(e) in present]
    if RECONCILIATION in present and entities:
        specs = [dg.AssetCheckSpec(QUARANTINE_SHARE, asset=quarantine_key(e),
                                   additional_deps=[RECONCILIATION],
                                   description=f"Quarantined {e} rows / landed {e} rows, over the days of "
                                               f"the run, stays at or under {MAX_SHARE_ENV} (default "
                                               f"{DEFAULT_MAX_SHARE}).")
                 for e in entities]

        @dg.multi_asset_check(name="quarantine_shares", specs=specs, pool=pool, can_subset=True)
        def quarantine_shares(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
            threshold = max_quarantine_share()
            # The days of the run's partition or range, by the files' day: one broken day shows
            # however much history there is. A run of no partition looks at every day.
            days = run_days(context.run.tags)  # the check is not partitioned: the run's tags say
            where = "WHERE file_date BETWEEN %(first)s AND %(last)s " if days else ""
            with warehouse.session() as client:
                rows = client.query(
                    "SELECT entity, sum(quarantined_rows), sum(bronze_rows) FROM silver.reconciliation "
                    f"{where}GROUP BY entity",
                    parameters={"first": days[0], "last": days[1]} if days else None,
                ).result_rows
            landed = f"landed for {days_text(days)}" if days else "landed"
            counts = {str(entity): (int(q), int(b)) for entity, q, b in rows}
            verdicts = quarantine_verdicts(counts, threshold)
            for check_key in context.selected_asset_check_keys:
                entity = check_key.asset_key.path[-1].removeprefix("quarantine_")
                passed, share = verdicts.get(entity, (True, 0.0))
                quarantined, bronze = counts.get(entity, (0, 0))
                yield dg.AssetCheckResult(
                    asset_key=check_key.asset_key,
                    check_name=QUARANTINE_SHARE,
                    passed=passed,
                    severity=dg.AssetCheckSeverity.WARN,
                    description=f"{share:.1%} of the {entity} rows {landed} are quarantined "
                                f"(threshold {threshold:.1%})",
                    metadata={"share": share, "threshold": threshold, "quarantined_rows": quarantined,
                              "bronze_rows": bronze, "days": days_text(days) if days else "all"},
                )

        checks.append(quarantine_shares)
    return checks


def _hours(rule: Mapping[str, Any] | None) -> timedelta | None:
    if not rule or not rule.get("count") or not rule.get("period"):
        return None
    return timedelta(hours=int(rule["count"]) * {"minute": 1 / 60, "hour": 1, "day": 24}[rule["period"]])


def build_freshness_checks(manifest: Mapping[str, Any]) -> list[dg.AssetChecksDefinition]:
    """One last-update freshness check per bronze source that declares freshness in dbt.

    dbt's `error_after` becomes an error, else `warn_after` a warning: the entity's newest file,
    as the landing asset's latest materialization records it, must have landed within that time.
    """
    by_rule: dict[tuple[timedelta, dg.AssetCheckSeverity], list[dg.AssetKey]] = {}
    for source in manifest.get("sources", {}).values():
        if source.get("source_name") != "bronze":
            continue
        freshness = source.get("freshness") or {}
        error, warn = _hours(freshness.get("error_after")), _hours(freshness.get("warn_after"))
        if error:
            rule = (error, dg.AssetCheckSeverity.ERROR)
        elif warn:
            rule = (warn, dg.AssetCheckSeverity.WARN)
        else:
            continue
        by_rule.setdefault(rule, []).append(landing_key(source["name"]))
    checks: list[dg.AssetChecksDefinition] = []
    with warnings.catch_warnings():  # the notice about freshness policies, as below
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        for (delta, severity), keys in sorted(by_rule.items(), key=lambda item: item[0][0]):
            checks += dg.build_last_update_freshness_checks(assets=keys, lower_bound_delta=delta,
                                                            severity=severity)
    return checks


def build_freshness_sensor(freshness_checks: list[dg.AssetChecksDefinition],
                           status: dg.DefaultSensorStatus) -> list[dg.SensorDefinition]:
    """The sensor that evaluates the freshness checks every ten minutes (none without checks)."""
    if not freshness_checks:
        return []
    # Dagster now also offers freshness policies; the checks stay, since they show up beside the
    # dbt tests of the same assets. Its notice about that would repeat on every load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return [dg.build_sensor_for_freshness_checks(
            freshness_checks=freshness_checks, default_status=status, minimum_interval_seconds=600,
        )]
