"""The Dagster code location on the real embedded engine, real dbt and real generated files.

Two consecutive daily partitions run in-process through the whole graph (simulator, loader,
`dbt build` with its tests, checks, dashboard); gold is then compared with the raw files and
silver, and a re-run of a partition must leave every table as it was. The schedule and the
sensors are evaluated with Dagster's own test contexts, and a planted failing dbt test in a
copy of the project must keep gold from being built (in a run of a two-day range, the way a
backfill runs).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest

from conftest import parsed_project_env
from ecom.config import SettingError, Settings, first_priced_month
from ecom.contract import ENTITIES
from ecom.generate import generate
from ecom.load import RawFile, load
from ecom.warehouse import session

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the code location is a top-level package of the checkout
    sys.path.insert(0, str(ROOT))

from orchestration import checks, sensors  # noqa: E402
from orchestration.assets_dbt import RECONCILIATION, shortened  # noqa: E402
from orchestration.assets_ingest import (  # noqa: E402
    A_FILE_EVERY_DAY,
    INGEST_LOG,
    LANDED_TABLES,
    NO_REJECTED_FILES,
    landing_key,
)
from orchestration.assets_raw import RAW_EXPORTS, SIMULATOR_ENV, missing_runs, simulator_enabled  # noqa: E402
from orchestration.assets_report import DASHBOARD  # noqa: E402
from orchestration.definitions import build_definitions  # noqa: E402
from orchestration.jobs import DAILY_JOB  # noqa: E402
from orchestration.partitions import START_DATE_ENV, days_text, run_days  # noqa: E402
from orchestration.resources import dbt_project, dbt_resource  # noqa: E402
from orchestration.schedules import SCHEDULE  # noqa: E402

BIN = Path(sys.executable).parent
DAYS = ("2026-09-01", "2026-09-02")
ORDERS_PER_DAY = 100
OWN_PREFIXES = ("CLICKHOUSE_", "ECOM_", "DBT_")
RUN_CONFIG = {"ops": {"raw__exports": {"config": {"orders_per_day": ORDERS_PER_DAY}}}}


def isolated_env(base: Path) -> dict[str, str]:
    """Environment of the code location: every path in `base`, the embedded target."""
    env = {k: v for k, v in os.environ.items() if not k.startswith((*OWN_PREFIXES, "DAGSTER_"))}
    env.update(
        ECOM_RAW_DIR=str(base / "raw"), ECOM_CHDB_PATH=str(base / "warehouse"), DBT_TARGET="dev",
        DBT_TARGET_PATH=str(base / "target"), DBT_LOG_PATH=str(base / "logs"),
        DAGSTER_HOME=str(base / "dagster"), ECOM_PROJECT_DIR=str(ROOT), ECOM_START_DATE="2026-09-01",
        ECOM_REPORT_PATH=str(base / "report.html"),
    )
    env.update(parsed_project_env())
    (base / "dagster").mkdir(parents=True, exist_ok=True)
    return env


@pytest.fixture(scope="module")
def validated(tmp_path_factory) -> tuple[Path, bool, subprocess.CompletedProcess]:
    """`dagster definitions validate` in a fresh isolated environment: (its folder, whether it had
    no dbt manifest before, the command's result). The module's code location is built there
    after it, from the manifest that command parsed."""
    base = tmp_path_factory.mktemp("orchestration")
    env = isolated_env(base)
    fresh = not (base / "target" / "manifest.json").exists()
    command = [str(BIN / "dagster"), "definitions", "validate", "-m", "orchestration.definitions"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return base, fresh, result


@pytest.fixture(scope="module")
def location(validated) -> Iterator[tuple[Path, dg.Definitions]]:
    """The code location built in an isolated environment (kept for the whole module)."""
    base = validated[0]
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith(OWN_PREFIXES)]:
            patch.delenv(key)
        for key, value in isolated_env(base).items():
            patch.setenv(key, value)
        yield base, build_definitions()


def run_day(defs: dg.Definitions, instance: dg.DagsterInstance, day: str,
            raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(DAILY_JOB)
    return job.execute_in_process(partition_key=day, instance=instance, run_config=RUN_CONFIG,
                                  raise_on_error=raise_on_error)


# The landing step's own checks. A run of the landing assets would also take every other check of
# them, the dbt source tests, and start dbt for checks the landing tests do not read (one run of a
# bronze table with them all is test_one_bronze_table_can_be_landed_alone).
LANDING = [landing_key(table) for table in LANDED_TABLES]
LANDING_CHECKS = {dg.AssetCheckKey(landing_key(INGEST_LOG), NO_REJECTED_FILES),
                  *(dg.AssetCheckKey(landing_key(entity), A_FILE_EVERY_DAY) for entity in ENTITIES)}


def land(defs: dg.Definitions, instance: dg.DagsterInstance, day: str) -> dg.ExecuteInProcessResult:
    """A run of the landing assets of a day with the landing step's checks: no dbt, no simulator."""
    job = defs.resolve_job_def(DAILY_JOB).get_subset(asset_selection=set(LANDING),
                                                      asset_check_selection=LANDING_CHECKS)
    return job.execute_in_process(partition_key=day, instance=instance)


def run_range(defs: dg.Definitions, instance: dg.DagsterInstance, first: str, last: str,
              raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """A range of partitions in one run, as a backfill with BackfillPolicy.single_run() launches it."""
    job = defs.resolve_job_def(DAILY_JOB)
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    return job.execute_in_process(tags=tags, instance=instance, run_config=RUN_CONFIG,
                                  raise_on_error=raise_on_error)


def snapshot(settings: Settings) -> dict[str, tuple[int, int]]:
    """(rows, order-independent content hash) of every table of bronze, silver and gold."""
    with session(settings) as client:
        tables = client.query(
            "SELECT database, name FROM system.tables WHERE database IN ('bronze', 'silver', 'gold') "
            "AND engine NOT LIKE '%View' ORDER BY database, name"
        ).result_rows
        out = {}
        for database, name in tables:
            rows, digest = client.query(
                f"SELECT count(), sum(cityHash64(tuple(*))) FROM `{database}`.`{name}`"
            ).result_rows[0]
            out[f"{database}.{name}"] = (int(rows), int(digest))
    return out


@pytest.fixture(scope="module")
def pipeline(location):
    """Both partitions materialized in-process, one after the other, on one instance."""
    base, defs = location
    instance = dg.DagsterInstance.ephemeral()
    results = {day: run_day(defs, instance, day) for day in DAYS}
    return base, defs, instance, results


def settings_of(base: Path) -> Settings:
    return Settings(raw_dir=base / "raw", chdb_path=base / "warehouse")


def csv_rows(raw_dir: Path, entity: str, days: tuple[str, ...]) -> int:
    total = 0
    for day in days:
        d = date.fromisoformat(day)
        for path in (raw_dir / entity / f"{d:%Y}" / f"{d:%m}" / f"{d:%d}").glob("*.csv"):
            with open(path, newline="", encoding="utf-8-sig") as handle:
                total += sum(1 for _ in csv.DictReader(handle))
    return total


def materialized(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, dict]:
    return {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}


def check_evaluations(result: dg.ExecuteInProcessResult) -> list:
    return [e.event_specific_data for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"]


# -- the definitions ----------------------------------------------------------------------


def test_a_long_node_error_keeps_its_start_and_what_to_do():
    """The failure's first line (the run's page, the alerts) gives each failed node's error in 300
    characters: cut at its end, it lost the stale-input guard's advice."""
    behind = "; ".join(f"silver.{name} (not built since the newest landing)" for name in ENTITIES)
    error = (f"gold.fct_orders builds on its last run, and from inputs behind the newest landing it would pass for "
             f"good the rows they get later: {behind}. Build them first: `dbt build -s +fct_orders`, or `dbt build`")
    short = shortened(error)
    assert len(error) > 300 and len(short) <= 300
    assert short.startswith("gold.fct_orders builds on its last run") and short.endswith(
        "Build them first: `dbt build -s +fct_orders`, or `dbt build`"), short
    assert shortened("short enough") == "short enough"


def test_definitions_validate_on_a_fresh_checkout(validated):
    """`dagster definitions validate` loads the code location with no dbt manifest yet (it parses)."""
    base, fresh, result = validated
    assert fresh
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (base / "target" / "manifest.json").exists()


def test_asset_graph_runs_from_raw_exports_to_the_dashboard(location):
    base, defs = location
    graph = defs.resolve_asset_graph()
    manifest = json.loads((base / "target" / "manifest.json").read_text(encoding="utf-8"))
    keys = set(graph.get_all_asset_keys())
    groups = {graph.get(k).group_name for k in keys}
    assert {"raw", "bronze", "silver", "gold", "reference", "reporting"} <= groups
    for entity in ENTITIES:
        landing = dg.AssetKey(["bronze", entity])
        assert graph.get(landing).group_name == "bronze"
        assert RAW_EXPORTS in graph.get(landing).parent_keys
        # the dbt source bronze.<entity> is the landing asset: silver hangs off it
        assert any(child.path[0] == "silver" for child in graph.get(landing).child_keys), entity
    # The dashboard hangs off what its dbt exposure says it reads (checked against the report's
    # queries in test_docs_site), not off every mart, and off silver.reconciliation: Dagster blocks
    # only the direct children of an asset on its blocking check, so all_balanced must gate the step.
    exposure = manifest["exposures"]["exposure.ecom.sales_dashboard"]
    read = {dg.AssetKey(["gold", node.split(".")[-1]]) for node in exposure["depends_on"]["nodes"]}
    assert read and graph.get(DASHBOARD).parent_keys == read | {RECONCILIATION}
    assert graph.get(DASHBOARD).owners == [exposure["owner"]["email"]]  # who owns the page in dbt
    job = defs.resolve_job_def(DAILY_JOB)
    upstream = job.graph.dependency_structure.input_to_upstream_outputs_for_node(DASHBOARD.to_python_identifier())
    assert "silver__reconciliation_all_balanced" in {output.node_name for outputs in upstream.values()
                                                     for output in outputs}
    assert graph.get(dg.AssetKey(["silver", "orders"])).group_name == "silver"
    assert graph.get(dg.AssetKey(["gold", "fct_orders"])).group_name == "gold"
    # descriptions come from the dbt docs, with a model's SQL under "Raw SQL"; a seed has none to show
    assert "latest valid version" in graph.get(dg.AssetKey(["silver", "customers"])).description
    assert "#### Raw SQL:" in graph.get(dg.AssetKey(["silver", "customers"])).description
    seed = manifest["nodes"]["seed.ecom.fx_rates_monthly"]
    assert graph.get(dg.AssetKey(["reference", "fx_rates_monthly"])).description == seed["description"]
    # every key of the daily job is partitioned by day, backfilled in one run
    for key in keys:
        node = graph.get(key)
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key
    check_names = {check.name for check in graph.asset_check_keys}
    assert {"all_balanced", "quarantine_share", "freshness_check", "no_rejected_files"} <= check_names
    assert check_names >= sensors.ALERTED_CHECKS, "the checks that alert are named as the location has them"
    # every check says what it checks; a dbt test's description comes from its yml, else from the
    # comment heading a singular test, else from the generic test and its arguments
    described = {(key.asset_key.to_user_string(), key.name): graph.get_check_spec(key).description
                 for key in graph.asset_check_keys}
    assert [key for key, text in described.items() if not text] == []
    assert described["silver/orders", "unique_orders_order_id"] == "`order_id` is unique."
    batch_ids = "source_relationships_present_bronze_orders__batch_id__batch_id__source_bronze_ingest_log_"
    assert described["bronze/orders", batch_ids] == "Every `_batch_id` is found in `batch_id` of bronze.ingest_log."
    assert described["gold/dim_customers", "dim_customers_validity_intervals_ordered"] == \
        "A version ends after it starts."
    assert described["gold/fct_orders", "gold_fct_orders_match_silver"].startswith(
        "fct_orders holds every order header of silver exactly once")
    assert described["gold/mart_cohort_retention", "mart_cohort_retention_month_zero_is_whole_cohort"] == \
        "`retention_rate = 1` holds on every row (where months_since_first = 0)."
    # a yml description is shown as it is: it says what the test checks, not only why it warns
    assert described["gold/mart_data_quality", "mart_data_quality_payments_match_orders"].startswith(
        "Every revenue order's captured payments add up to its total")


# -- two partitions end to end ------------------------------------------------------------


def test_two_partitions_materialize_the_whole_graph(pipeline):
    base, defs, _, results = pipeline
    expected = set(defs.resolve_asset_graph().get_all_asset_keys())
    for day, result in results.items():
        assert result.success, day
        assert set(materialized(result)) == expected, day
        assert materialized(result)[DASHBOARD]["path"].value == str(base / "report.html")
        failed = [(c.asset_key.to_user_string(), c.check_name) for c in check_evaluations(result)
                  if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
        assert not failed, f"{day}: error checks failed: {failed}"


def test_the_second_partition_leaves_the_unchanged_seeds_out(pipeline):
    """The first run loads the seeds and tests them; the next, with the same seed files and
    tables, leaves both out of its dbt build (as `ecom run` does) and says so on the assets."""
    _, defs, _, results = pipeline
    graph = defs.resolve_asset_graph()
    seeds = {key for key in graph.get_all_asset_keys() if key.path[0] == "reference"}
    assert len(seeds) == len(list((ROOT / "seeds").glob("*.csv")))
    first, second = (results[day] for day in DAYS)
    for key in seeds:
        assert "reloaded" not in materialized(first)[key], key
        assert materialized(second)[key]["reloaded"].value is False, key
        assert materialized(second)[key]["dagster/row_count"].value > 0, key
    seed_checks = {c.check_name for c in check_evaluations(first) if c.asset_key in seeds}
    assert seed_checks, "the seeds' tests ran in the first partition"
    assert not [c for c in check_evaluations(second) if c.asset_key in seeds]
    # the models' checks still ran
    assert any(c.asset_key == dg.AssetKey(["silver", "orders"]) for c in check_evaluations(second))


def test_bronze_holds_every_raw_row_and_says_so_in_metadata(pipeline):
    base, defs, _, results = pipeline
    graph = defs.resolve_asset_graph()
    with session(settings_of(base)) as client:
        # Each landing asset shows its table's columns, as the warehouse has them, described.
        for table in (*ENTITIES, "ingest_log"):
            schema = graph.get(dg.AssetKey(["bronze", table])).metadata["dagster/column_schema"].schema
            assert [(c.name, c.type) for c in schema.columns] == client.query(
                f"SELECT name, type FROM system.columns WHERE database = 'bronze' AND table = '{table}' "
                "ORDER BY position").result_rows, table
            assert all(c.description for c in schema.columns), table
        for entity in ENTITIES:
            landed = int(client.command(f"SELECT count() FROM bronze.`{entity}`"))
            assert landed == csv_rows(base / "raw", entity, DAYS), entity
            for day in DAYS:
                meta = materialized(results[day])[dg.AssetKey(["bronze", entity])]
                assert meta["rows_landed"].value == csv_rows(base / "raw", entity, (day,)), (entity, day)
                assert meta["dagster/partition_row_count"].value == meta["rows_landed"].value, (entity, day)
                assert meta["dagster/row_count"].value > 0
    orders_meta = materialized(results[DAYS[1]])[dg.AssetKey(["silver", "orders"])]
    assert orders_meta["dagster/row_count"].value > 0


def test_gold_daily_sales_agree_with_silver(pipeline):
    base, _, _, _ = pipeline
    with session(settings_of(base)) as client:
        sales = {str(day): (int(orders), float(revenue)) for day, orders, revenue in client.query(
            "SELECT order_date, revenue_orders, net_revenue_usd FROM gold.mart_daily_sales"
        ).result_rows}
        from_silver = {str(day): int(n) for day, n in client.query(
            "SELECT order_date, count() FROM silver.orders "
            "WHERE order_status IN ('paid', 'shipped', 'delivered') "
            "AND order_id IN (SELECT order_id FROM silver.order_items) GROUP BY order_date"
        ).result_rows}
    for day in DAYS:
        assert day in sales, f"no daily sales for {day}"
        orders, revenue = sales[day]
        assert orders == from_silver.get(day, 0), day
        assert (revenue > 0) == (orders > 0), day
    # orders are paid the day after they are placed: the first day's are revenue by now
    assert sales[DAYS[0]][0] > 0


def test_quality_checks_ran_and_passed(pipeline):
    _, _, _, results = pipeline
    evaluations = check_evaluations(results[DAYS[-1]])
    by_name = {}
    for evaluation in evaluations:
        by_name.setdefault(evaluation.check_name, []).append(evaluation)
    assert [e.passed for e in by_name["all_balanced"]] == [True]
    assert len(by_name["quarantine_share"]) == len(ENTITIES)
    assert all(e.passed for e in by_name["quarantine_share"])
    # Over the days of the run (a broken day shows however long the history), not all of them.
    assert {e.metadata["days"].value for e in by_name["quarantine_share"]} == {DAYS[-1]}
    [landing_check] = by_name["no_rejected_files"]
    rejected = landing_check.metadata["rejected"].value
    assert landing_check.passed == (not rejected)
    # dbt tests arrive as checks on the models and on the landing assets (source tests)
    assert any(e.asset_key == dg.AssetKey(["silver", "orders"]) for e in evaluations)
    assert any(e.asset_key == dg.AssetKey(["bronze", "orders"]) and e.check_name.startswith("source_")
               for e in evaluations)
    # a source test that reads another source too (the batch ids against the ingest log) is a
    # check of the source it is defined on, not an observation without a check
    assert {e.asset_key for e in evaluations if e.check_name.startswith("source_relationships_present_bronze_")} \
        == {dg.AssetKey(["bronze", entity]) for entity in ENTITIES}
    # the lineage columns' types, one check per landing asset (the ingest log's file_path too)
    assert {e.asset_key for e in evaluations if e.check_name.startswith("source_lineage_columns_not_nullable_")} \
        == {dg.AssetKey(["bronze", table]) for table in (*ENTITIES, "ingest_log")}
    # singular tests that read several models are checks of the model they name
    assert any(e.asset_key == dg.AssetKey(["gold", "fct_orders"]) and e.check_name == "gold_fct_orders_match_silver"
               and e.passed for e in evaluations)


def test_the_dashboard_is_not_written_from_numbers_that_do_not_add_up(pipeline):
    """Another run's build can come between a run's all_balanced check and its dashboard step:
    the step reads the reconciliation itself."""
    base, defs, instance, _ = pipeline
    page = base / "report.html"
    before = page.read_bytes()
    dashboard = defs.resolve_job_def(DAILY_JOB).get_subset(asset_selection={DASHBOARD})
    with session(settings_of(base)) as client:
        client.command("INSERT INTO silver.reconciliation (entity, file_date, bronze_rows, silver_rows, "
                       "duplicate_rows, superseded_rows, quarantined_rows, is_balanced) "
                       "VALUES ('orders', '2001-01-01', 2, 1, 0, 0, 0, false)")
    try:
        refused = dashboard.execute_in_process(partition_key=DAYS[-1], instance=instance, raise_on_error=False)
    finally:
        with session(settings_of(base)) as client:
            client.command("DELETE FROM silver.reconciliation WHERE file_date = '2001-01-01'")
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "1 entity-days of silver.reconciliation do not balance" in failure.step_failure_data.error.message
    assert page.read_bytes() == before, "the last page is kept"
    written = dashboard.execute_in_process(partition_key=DAYS[-1], instance=instance)
    assert materialized(written)[DASHBOARD]["path"].value == str(page)


def test_the_landing_records_when_each_entity_last_landed_not_when_it_ran(pipeline):
    """What the freshness checks read: a run that lands nothing (a feed that stopped) does not
    make its entity look fresh."""
    base, defs, instance, _ = pipeline
    started = datetime.now(UTC).timestamp()
    again = land(defs, instance, DAYS[-1])
    assert materialized(again)[landing_key(INGEST_LOG)]["files_landed"].value == 0
    with session(settings_of(base)) as client:
        newest = {str(entity): float(seconds) for entity, seconds in client.query(
            "SELECT entity, toUnixTimestamp64Milli(max(finished_at)) / 1000 FROM bronze.ingest_log "
            "WHERE status = 'landed' GROUP BY entity"
        ).result_rows}
    recorded = {key.path[-1]: meta["dagster/last_updated_timestamp"].value
                for key, meta in materialized(again).items()}
    assert recorded == pytest.approx({**newest, INGEST_LOG: max(newest.values())}, abs=0.001)
    assert max(recorded.values()) < started


def test_rerunning_a_partition_changes_nothing(pipeline):
    base, defs, instance, _ = pipeline
    before = snapshot(settings_of(base))
    assert any(name.startswith("gold.") for name in before)
    again = run_day(defs, instance, DAYS[-1])
    assert again.success
    assert materialized(again)[dg.AssetKey(["bronze", "ingest_log"])]["files_landed"].value == 0
    assert snapshot(settings_of(base)) == before


def test_a_rejected_file_keeps_the_landing_check_failing_and_alerting_until_it_is_gone(pipeline, monkeypatch):
    """The run stays green (the good files land), so the alert comes from its failed check, in
    every run while the file is there."""
    base, defs, instance, _ = pipeline
    bad = base / "raw" / "orders" / "2026" / "09" / "02" / "orders_20260902_part9.csv"
    bad.write_text("id;status\n1;paid\n")
    misnamed = base / "raw" / "orders" / "2026-09-02-orders.csv"  # no day: named by every run while it is there
    misnamed.write_text("id;status\n2;paid\n")

    def landing_check() -> tuple[bool, list[str], list[dict]]:
        result = land(defs, instance, DAYS[-1])
        assert result.success
        [check] = [c for c in check_evaluations(result) if c.check_name == "no_rejected_files"]
        with webhook(monkeypatch) as received:
            sensors.alert_on_failed_checks(dg.build_run_status_sensor_context(
                sensor_name=sensors.CHECKS_SENSOR, dagster_instance=instance,
                dagster_run=result.dagster_run, dagster_event=result.get_run_success_event()))
        return check.passed, [r["file"] for r in check.metadata["rejected"].value], [r["json"] for r in received]

    try:
        for attempt in ("rejected in this run", "rejected in an earlier run"):
            passed, files, alerts = landing_check()
            assert not passed and "orders/2026/09/02/orders_20260902_part9.csv" in files, attempt
            assert "orders/2026-09-02-orders.csv" in files, attempt
            [alert] = alerts
            assert alert["status"] == "failed_checks" and alert["partition"] == DAYS[-1], alert
            assert f"1 check(s) did not pass: bronze/ingest_log no_rejected_files (WARN): {len(files)} file(s)" \
                in alert["text"], alert
            assert f"{files[0]} (" in alert["text"], alert
    finally:
        bad.unlink()
        misnamed.unlink()
    passed, files, alerts = landing_check()
    assert "orders/2026/09/02/orders_20260902_part9.csv" not in files
    assert "orders/2026-09-02-orders.csv" not in files
    assert passed == (not files)
    assert bool(alerts) == bool(files), alerts


def test_the_check_alert_names_the_projects_own_failed_checks_not_dbts_warnings(pipeline, monkeypatch):
    """dbt's warn tests flag the exports' known dirt over all history, on every run."""
    _, _, instance, results = pipeline
    result = results[DAYS[-1]]
    failed = [e for e in check_evaluations(result) if not e.passed]
    with webhook(monkeypatch) as received:
        sensors.alert_on_failed_checks(dg.build_run_status_sensor_context(
            sensor_name=sensors.CHECKS_SENSOR, dagster_instance=instance,
            dagster_run=result.dagster_run, dagster_event=result.get_run_success_event()))
    text = " ".join(r["json"]["text"] for r in received)
    assert any(e.check_name not in sensors.ALERTED_CHECKS for e in failed), "no dbt warning in the run to leave out"
    for evaluation in failed:
        named = f"{evaluation.asset_key.to_user_string()} {evaluation.check_name} (" in text
        assert named == (evaluation.check_name in sensors.ALERTED_CHECKS), (evaluation.check_name, text)


def test_a_day_without_one_entitys_export_is_named_by_its_landing_check(pipeline, tmp_path):
    # The day has files, so the simulator leaves it alone; the payments feed stopped.
    base, defs, instance, _ = pipeline
    job = defs.resolve_job_def(DAILY_JOB)
    day_folder = base / "raw" / "payments" / "2026" / "09" / "02"
    kept = tmp_path / "kept"
    shutil.move(day_folder, kept)

    def checks() -> dict[str, dg.AssetCheckEvaluation]:
        result = land(defs, instance, DAYS[-1])
        return {c.asset_key.path[-1]: c for c in check_evaluations(result) if c.check_name == "a_file_every_day"}

    def alone(**partition) -> dg.AssetCheckEvaluation:
        """The check executed on its own, as the UI's "Execute" does: nothing lands."""
        key = dg.AssetCheckKey(dg.AssetKey(["bronze", "payments"]), "a_file_every_day")
        result = job.get_subset(asset_selection=set(), asset_check_selection={key}).execute_in_process(
            instance=instance, **partition)
        assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
        [evaluation] = check_evaluations(result)
        return evaluation

    try:
        stopped = checks()
        by_itself, every_day = alone(partition_key=DAYS[-1]), alone()
    finally:
        shutil.move(kept, day_folder)
    assert (by_itself.passed, by_itself.metadata["days_without_a_file"].value) == (False, [DAYS[-1]])
    assert not every_day.passed and DAYS[-1] in every_day.metadata["days_without_a_file"].value
    assert set(stopped) == set(ENTITIES)
    assert not stopped["payments"].passed and stopped["payments"].metadata["days_without_a_file"].value == [DAYS[-1]]
    assert all(stopped[entity].passed for entity in ENTITIES if entity != "payments")
    assert checks()["payments"].passed


def test_one_bronze_table_can_be_landed_alone(pipeline):
    base, defs, instance, _ = pipeline
    payments = dg.AssetKey(["bronze", "payments"])
    result = defs.resolve_job_def(DAILY_JOB).execute_in_process(
        partition_key=DAYS[-1], instance=instance, run_config=RUN_CONFIG, asset_selection=[payments])
    assert result.success
    assert set(materialized(result)) == {payments}
    meta = materialized(result)[payments]
    files = list((base / "raw" / "payments" / "2026" / "09" / "02").glob("*.csv"))
    assert (meta["files_landed"].value, meta["files_skipped"].value) == (0, len(files)), "landed before"


def test_landing_from_the_folder_above_the_exports_fails_naming_the_one_to_use(pipeline, monkeypatch):
    # Landed as it is, every export there would be rejected as misnamed and logged so.
    base, defs, instance, _ = pipeline
    monkeypatch.setenv("ECOM_RAW_DIR", str(base))
    result = defs.resolve_job_def(DAILY_JOB).execute_in_process(
        partition_key=DAYS[-1], instance=instance, run_config=RUN_CONFIG,
        asset_selection=[dg.AssetKey(["bronze", "payments"])], raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert f"but {base / 'raw'} has: point ECOM_RAW_DIR" in failure.step_failure_data.user_failure_data.description


# -- automation ---------------------------------------------------------------------------


def test_schedule_runs_the_previous_day_at_two_utc(location):
    _, defs = location
    schedule = defs.resolve_schedule_def(SCHEDULE)
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone in (None, "UTC")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 9, 3, 2, 0, tzinfo=UTC)
        )
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-09-02"]


def test_dbt_runs_on_the_target_plain_dbt_takes_without_naming_it(location, monkeypatch):
    """dbt keeps a `--target` in its partial-parse state: Dagster's dbt steps name none where the
    profile takes the same one from DBT_TARGET, set or not, so that a plain `dbt build` after a
    Dagster run (and the run after it) does not parse the project anew."""
    _, defs = location
    assert defs.resources["dbt"].target is None  # DBT_TARGET=dev
    project = dbt_project()
    monkeypatch.delenv("DBT_TARGET")
    assert dbt_resource(project).target is None
    server = Settings.from_env({"DBT_TARGET": "server", "CLICKHOUSE_HOST": "ch.example.internal"})
    assert dbt_resource(project, server).target == "server"  # the profile would take dev
    monkeypatch.setenv("DBT_TARGET", "server")
    assert dbt_resource(project, server).target is None


@pytest.fixture
def held_warehouse(pipeline) -> Iterator[Path]:
    """Another process holding the embedded warehouse open, as a long CLI query would."""
    base = pipeline[0]
    code = ("import sys, time\nfrom pathlib import Path\nfrom ecom.config import Settings\n"
            "from ecom.warehouse import session\n"
            f"with session(Settings(chdb_path=Path({str(base / 'warehouse')!r}))):\n"
            "    print('ready', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield base
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_new_files_sensor_requests_only_unlanded_days(pipeline):
    base, defs, _, _ = pipeline
    sensor = defs.resolve_sensor_def(sensors.NEW_FILES_SENSOR)
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert first.run_requests == [], "the landed days must not start a run"
        assert first.cursor
        quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor,
                                                             definitions=defs))
        assert not quiet.run_requests and "no new raw files" in quiet.skip_message

        # A file whose name gives no day: the latest day with files runs again, and its load
        # rejects the file (the ingest log then holds it, as it holds the landed days' files).
        misnamed = base / "raw" / "orders" / "orders-september.csv"
        misnamed.write_text("order_id\n")
        undated = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=quiet.cursor,
                                                               definitions=defs))
        [request] = undated.run_requests
        assert request.partition_key == DAYS[-1]
        # Not the key of the day's own run, which Dagster has already started and would skip.
        days, _ = sensors.files_by_day(base / "raw", date.fromisoformat(DAYS[0]), date.fromisoformat(DAYS[-1]))
        own_key = f"{DAYS[-1]}:{sensors.signature(days[DAYS[-1]])}"
        assert request.run_key.startswith(own_key) and request.run_key != own_key, request.run_key
        again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=undated.cursor,
                                                             definitions=defs))
        assert not again.run_requests, "asked for once"
        misnamed.unlink()
        # One in an earlier day's folder: that day runs, the one load that lists its folder.
        day = date.fromisoformat(DAYS[0])
        copy = base / "raw" / "orders" / f"{day:%Y/%m/%d}" / f"orders_{day:%Y%m%d} (1).csv"
        copy.write_text("order_id\n")
        placed = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=again.cursor,
                                                              definitions=defs))
        assert [r.partition_key for r in placed.run_requests] == [DAYS[0]] != [DAYS[-1]]
        # With a file whose name gives no day beside it: it goes with that run, which rejects it
        # (every load reads it), and no run of the last day starts for it alone.
        misnamed.write_text("order_id\nO-1\n")
        copy.write_text("order_id\nO-2\n")
        both = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=placed.cursor,
                                                            definitions=defs))
        assert [r.partition_key for r in both.run_requests] == [DAYS[0]], [r.run_key for r in both.run_requests]
        misnamed.unlink()
        copy.unlink()

        generate(base / "raw", start=date(2026, 9, 3), days=1, orders_per_day=ORDERS_PER_DAY, progress=False)
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor,
                                                            definitions=defs))
        assert [r.partition_key for r in tick.run_requests] == ["2026-09-03"]
        assert tick.run_requests[0].run_key.startswith("2026-09-03:")

        # Consecutive days that arrive together are one run of their range, as a backfill runs.
        generate(base / "raw", start=date(2026, 9, 5), days=2, orders_per_day=ORDERS_PER_DAY, progress=False)
        ranged = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                              definitions=defs))
        [request] = ranged.run_requests
        assert request.partition_key is None
        assert (request.tags["dagster/asset_partition_range_start"],
                request.tags["dagster/asset_partition_range_end"]) == ("2026-09-05", "2026-09-06")
        assert request.run_key.startswith("2026-09-05..2026-09-06:")

        # The run of 09-03 failed (the warehouse was busy, say): the next ticks ask for it again,
        # under keys of their own, twice at most; a cancelled run is not asked for again.
        key, cursor = tick.run_requests[0].run_key, ranged.cursor
        for attempt in (1, 2, 3):
            failed = broken_job.execute_in_process(instance=instance, raise_on_error=False,
                                                   tags={"dagster/run_key": key})
            assert not failed.success
            retry = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                 definitions=defs))
            cursor = retry.cursor
            if attempt == 3:
                assert not retry.run_requests, "two retries at most"
                break
            [again] = retry.run_requests
            assert (again.partition_key, again.run_key) == ("2026-09-03", f"{tick.run_requests[0].run_key}#{attempt}")
            key = again.run_key
        cancelled = instance.create_run_for_job(broken_job, tags={"dagster/run_key": request.run_key})
        instance.report_run_canceled(cancelled)
        quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))
        assert not quiet.run_requests
        assert json.loads(quiet.cursor)["asked"] == {}, "the runs that gave up or were cancelled are forgotten"


def test_new_files_sensor_sees_files_put_back_with_their_times_and_not_files_rejected_for_their_name(
        pipeline, tmp_path, monkeypatch):
    base, defs, _, _ = pipeline
    raw_dir, warehouse = tmp_path / "raw", tmp_path / "warehouse"
    shutil.copytree(base / "raw", raw_dir)
    shutil.copytree(base / "warehouse", warehouse, symlinks=True)
    monkeypatch.setenv("ECOM_RAW_DIR", str(raw_dir))
    monkeypatch.setenv("ECOM_CHDB_PATH", str(warehouse))
    settings = Settings.from_env()
    sensor = defs.resolve_sensor_def(sensors.NEW_FILES_SENSOR)
    day = date.fromisoformat(DAYS[0])
    products = raw_dir / "products" / f"{day:%Y/%m/%d}" / f"products_{day:%Y%m%d}.csv"
    landed, changed = tmp_path / "landed.csv", tmp_path / "changed.csv"
    shutil.copy2(products, landed)

    def land_day() -> None:
        with session(settings) as client:
            load(settings, client, day, day)

    with dg.instance_for_test() as instance:
        def tick(cursor: str | None) -> dg.SensorExecutionData:
            return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))

        cursor = tick(None).cursor
        # A second version lands, then the first is put back as it was (`cp -p`) and lands, then
        # the second is put back: the files are as they were when the second was first asked
        # for, but the ingest log holds another version, so the run has a key of its own.
        products.write_text(landed.read_text() + landed.read_text().splitlines()[1] + "\n")
        shutil.copy2(products, changed)
        keys = []
        for version in (changed, landed, changed):
            shutil.copy2(version, products)
            asked = tick(cursor)
            cursor = asked.cursor
            assert len(asked.run_requests) == 1, asked.skip_message
            [request] = asked.run_requests
            assert request.partition_key == DAYS[0]
            keys.append(request.run_key)
            land_day()
        assert len(set(keys)) == 3, keys
        # Rewritten with the size of the version landed, its time set before that landing.
        header, first_row, rest = changed.read_text().split("\n", 2)
        products.write_text(f"{header}\n{first_row.swapcase()}\n{rest}")
        assert products.stat().st_size == changed.stat().st_size
        os.utime(products, ns=(landed.stat().st_atime_ns, landed.stat().st_mtime_ns))
        asked = tick(cursor)
        assert [r.partition_key for r in asked.run_requests] == [DAYS[0]], asked.skip_message
        land_day()

        # A file rejected for its name stays rejected: no run for it, even from a sensor with no
        # cursor yet (a daemon's first tick).
        (raw_dir / "orders" / "orders-september.csv").write_text("order_id\n")
        with session(settings) as client:
            assert [o.reason for o in load(settings, client).rejected] == ["bad_name"]
        fresh = tick(None)
        assert fresh.run_requests == [], [r.run_key for r in fresh.run_requests]


def test_new_files_sensor_reads_no_pipe_and_runs_for_files_that_name_no_day_alone(pipeline, tmp_path, monkeypatch):
    # A named pipe where a removed file was (no bytes logged, as the pipe has): not read, which
    # would wait forever, but left to a load, which rejects it.
    day = date.fromisoformat(DAYS[0])
    pipe = tmp_path / "raw" / "orders" / f"{day:%Y/%m/%d}" / f"orders_{day:%Y%m%d}.csv"
    pipe.parent.mkdir(parents=True)
    os.mkfifo(pipe)
    raw = RawFile(pipe, pipe.relative_to(tmp_path / "raw").as_posix(), "orders", day)
    ledger = {raw.relative: sensors.Logged(0, "", 0.0, "removed")}
    assert sensors.unlanded([raw], ledger, rewritten=True) == [raw]
    pipe.unlink()
    # A raw folder holding only a file whose name gives no day: the run of the last day rejects it.
    _, defs, _, _ = pipeline
    (tmp_path / "raw" / "orders" / "orders-september.csv").write_text("order_id\n")
    monkeypatch.setenv("ECOM_RAW_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("ECOM_CHDB_PATH", str(tmp_path / "no-warehouse-yet"))
    sensor = defs.resolve_sensor_def(sensors.NEW_FILES_SENSOR)
    with dg.instance_for_test() as instance:
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    [request] = tick.run_requests
    assert request.partition_key == defs.resolve_job_def(DAILY_JOB).partitions_def.get_last_partition_key()


def test_new_files_sensor_skips_while_the_warehouse_is_busy(held_warehouse, pipeline):
    _, defs, _, _ = pipeline
    sensor = defs.resolve_sensor_def(sensors.NEW_FILES_SENSOR)
    with dg.instance_for_test() as instance:
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert not tick.run_requests
    assert "in use by process" in tick.skip_message and "next tick" in tick.skip_message


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"content_type": self.headers["Content-Type"], "json": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@dg.op
def _broken_step():
    raise RuntimeError("planted failure for the alert test")


@dg.job
def broken_job():
    _broken_step()


@contextmanager
def webhook(monkeypatch) -> Iterator[list[dict]]:
    """A local HTTP endpoint set as ECOM_ALERT_WEBHOOK: yields the list of requests it received."""
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    _Webhook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(sensors.WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/hook")
    try:
        yield _Webhook.received
    finally:
        server.shutdown()


@pytest.mark.parametrize("with_webhook", [True, False])
def test_run_failure_sensor_posts_an_alert(with_webhook, monkeypatch):
    with webhook(monkeypatch):
        if not with_webhook:
            monkeypatch.delenv(sensors.WEBHOOK_ENV, raising=False)
        with dg.instance_for_test() as instance:
            result = broken_job.execute_in_process(instance=instance, raise_on_error=False)
            assert not result.success
            context = dg.build_run_status_sensor_context(
                sensor_name=sensors.FAILURE_SENSOR, dagster_instance=instance,
                dagster_run=result.dagster_run, dagster_event=result.get_run_failure_event(),
            ).for_run_failure()
            sensors.alert_on_run_failure(context)
    if not with_webhook:
        assert _Webhook.received == []
        return
    [alert] = _Webhook.received
    assert alert["content_type"] == "application/json"
    assert alert["json"]["job"] == "broken_job"
    assert alert["json"]["run_id"] == result.run_id
    assert "broken_job" in alert["json"]["text"] and alert["json"]["url"].endswith(result.run_id)
    # The step's own error says why, not only which step failed.
    assert "_broken_step: RuntimeError: planted failure for the alert test" in alert["json"]["text"], alert


@dg.asset(key=["bronze", "stale_feed"])
def _stale_feed() -> None:
    pass


@dg.asset_check(asset=_stale_feed, name=checks.FRESHNESS_CHECK)
def _stale_feed_freshness() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                               description="the newest file landed 3 days ago")


def test_a_check_run_of_the_implicit_asset_job_is_named_by_what_it_checked(monkeypatch):
    """The freshness sensor runs its checks in Dagster's implicit asset job: the alert names the
    checked assets, not `__ASSET_JOB`."""
    defs = dg.Definitions(assets=[_stale_feed], asset_checks=[_stale_feed_freshness])
    job = defs.resolve_implicit_global_asset_job_def()
    key = dg.AssetCheckKey(dg.AssetKey(["bronze", "stale_feed"]), checks.FRESHNESS_CHECK)
    with webhook(monkeypatch) as received, dg.instance_for_test() as instance:
        result = job.get_subset(asset_selection=set(), asset_check_selection={key}).execute_in_process(
            instance=instance)
        assert result.dagster_run.job_name.startswith(sensors.IMPLICIT_ASSET_JOB)
        sensors.alert_on_failed_checks(dg.build_run_status_sensor_context(
            sensor_name=sensors.CHECKS_SENSOR, dagster_instance=instance,
            dagster_run=result.dagster_run, dagster_event=result.get_run_success_event()))
    [alert] = [r["json"] for r in received]
    assert alert["text"].startswith("ecom pipeline run succeeded with failed checks: checks of bronze/stale_feed "
                                    f"(run {result.run_id[:8]}): "), alert
    assert "__ASSET_JOB" not in alert["text"] and "the newest file landed 3 days ago" in alert["text"], alert
    # A run the daemon launched records its selection: the freshness sensor's, or the asset graph's.
    run = dg.DagsterRun(job_name=result.dagster_run.job_name, asset_check_selection={
        dg.AssetCheckKey(dg.AssetKey(["bronze", entity]), checks.FRESHNESS_CHECK) for entity in ENTITIES})
    assert sensors.run_subject(run) == "checks of bronze/customers, bronze/order_items, bronze/orders and 2 more"
    run = dg.DagsterRun(job_name=result.dagster_run.job_name, asset_selection={dg.AssetKey(["gold", "fct_orders"])})
    assert sensors.run_subject(run) == "assets gold/fct_orders"


# -- a failing error-severity dbt test stops bad data before gold ---------------------------

PLANTED = """{{ config(severity='error') }}
-- Planted by tests/test_orchestration.py in a temporary copy of the project: fails on any order.
select order_id from {{ ref('orders') }}
"""


def test_failing_error_test_keeps_gold_from_materializing_in_a_range_run(tmp_path, monkeypatch):
    project = tmp_path / "project"
    skipped = {".git", ".venv", "data", "target", "logs", "tests", "docs/img"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder).relative_to(ROOT)
        return {n for n in names if (here / n).as_posix() in skipped or n.endswith("_cache") or n == "__pycache__"}

    shutil.copytree(ROOT, project, ignore=ignore)
    (project / "data_tests" / "planted_failure.sql").write_text(PLANTED, encoding="utf-8")
    for key in [k for k in os.environ if k.startswith(OWN_PREFIXES)]:
        monkeypatch.delenv(key)
    for key, value in isolated_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ECOM_PROJECT_DIR", str(project))

    defs = build_definitions(project)
    graph = defs.resolve_asset_graph()
    orders = dg.AssetKey(["silver", "orders"])
    downstream, frontier = set(), [orders]
    while frontier:
        for child in graph.get(frontier.pop()).child_keys:
            if child not in downstream:
                downstream.add(child)
                frontier.append(child)
    gold_below = {key for key in downstream if key.path[0] == "gold"}
    assert dg.AssetKey(["gold", "mart_daily_sales"]) in gold_below

    # both days as one run, as a backfill of the range runs
    with dg.instance_for_test() as instance:
        result = run_range(defs, instance, DAYS[0], DAYS[-1], raise_on_error=False)
        context = dg.build_run_status_sensor_context(
            sensor_name=sensors.FAILURE_SENSOR, dagster_instance=instance,
            dagster_run=result.dagster_run, dagster_event=result.get_run_failure_event(),
        ).for_run_failure()
        why = sensors._why(context)
    assert not result.success
    # The failed node and its error lead the step's failure and the alert, not dagster-dbt's
    # "The dbt CLI process with command".
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    first_line = failure.step_failure_data.user_failure_data.description.splitlines()[0]
    assert first_line.startswith("dbt build failed: test planted_failure (fail): "), first_line
    assert "\x1b[" not in failure.step_failure_data.user_failure_data.description, "dbt's colours are a terminal's"
    assert f"ecom_dbt: {first_line}" in why, why
    built = set(materialized(result))
    assert materialized(result)[RAW_EXPORTS]["days_simulated"].value == ", ".join(DAYS)
    # Its figures are the range's: said so, and not given as each day's partition row count.
    assert materialized(result)[RAW_EXPORTS]["days"].value == f"{DAYS[0]}..{DAYS[-1]}"
    assert "dagster/row_count" not in materialized(result)[RAW_EXPORTS]
    assert materialized(result)[RAW_EXPORTS]["rows_of_the_days"].value > 0
    for entity in ENTITIES:
        meta = materialized(result)[dg.AssetKey(["bronze", entity])]
        assert meta["days"].value == f"{DAYS[0]}..{DAYS[-1]}" and "dagster/partition_row_count" not in meta
        assert meta["rows_of_the_days"].value == csv_rows(tmp_path / "raw", entity, DAYS), entity
    with session(Settings(chdb_path=tmp_path / "warehouse")) as client:
        for entity in ENTITIES:
            landed = int(client.command(f"SELECT count() FROM bronze.`{entity}`"))
            assert landed == csv_rows(tmp_path / "raw", entity, DAYS), entity
    assert orders in built, "silver.orders itself is built, then its test fails"
    assert not built & gold_below, f"gold built despite the failing test: {built & gold_below}"
    assert DASHBOARD not in built
    planted = [c for c in check_evaluations(result) if c.check_name == "planted_failure"]
    assert planted and not planted[0].passed and planted[0].severity == dg.AssetCheckSeverity.ERROR
    with session(Settings(chdb_path=tmp_path / "warehouse")) as client:
        assert not client.command("SELECT count() FROM system.tables WHERE database = 'gold' "
                                  "AND name = 'mart_daily_sales'")
    assert not (ROOT / "data_tests" / "planted_failure.sql").exists()


# -- pure pieces --------------------------------------------------------------------------


def test_quarantine_share_reads_the_days_of_the_run():
    assert run_days({"dagster/partition": "2026-09-02"}) == ("2026-09-02", "2026-09-02")
    assert run_days({"dagster/asset_partition_range_start": "2026-09-01",
                     "dagster/asset_partition_range_end": "2026-09-03"}) == ("2026-09-01", "2026-09-03")
    assert run_days({}) is None
    assert (days_text(("2026-09-02", "2026-09-02")), days_text(("2026-09-01", "2026-09-03"))) == (
        "2026-09-02", "2026-09-01..2026-09-03")


def test_quarantine_threshold():
    verdicts = checks.quarantine_verdicts({"orders": (30, 100), "payments": (5, 100), "empty": (0, 0)}, 0.25)
    assert verdicts == {"orders": (False, 0.3), "payments": (True, 0.05), "empty": (True, 0.0)}
    assert checks.max_quarantine_share({}) == checks.DEFAULT_MAX_SHARE
    assert checks.max_quarantine_share({checks.MAX_SHARE_ENV: "0.1"}) == 0.1
    for value in ("2", "abc", "25%", "nan"):
        with pytest.raises(ValueError, match=rf"{checks.MAX_SHARE_ENV}='{value}' must be a share between 0 and 1"):
            checks.max_quarantine_share({checks.MAX_SHARE_ENV: value})


def test_the_simulator_never_writes_among_real_exports(tmp_path, monkeypatch):
    """A late export in a folder of real files (no `_manifest/`) fails its day; it is not invented."""
    from orchestration.assets_raw import build_raw_exports, simulated_world
    from orchestration.partitions import daily_partitions
    from orchestration.resources import Warehouse

    raw = tmp_path / "raw"
    delivered = raw / "orders" / "2026" / "09" / "01" / "orders_20260901.csv"
    delivered.parent.mkdir(parents=True)
    delivered.write_text("order_id\n")
    assert simulated_world(tmp_path / "empty") and not simulated_world(raw)
    for key in [k for k in os.environ if k.startswith(OWN_PREFIXES)]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ECOM_RAW_DIR", str(raw))
    monkeypatch.setenv("ECOM_CHDB_PATH", str(tmp_path / "warehouse"))

    result = dg.materialize([build_raw_exports(daily_partitions(date(2026, 9, 1)))], partition_key="2026-09-02",
                            resources={"warehouse": Warehouse()}, raise_on_error=False)

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "real exports" in failure.step_failure_data.error.message
    assert sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file()) == [
        "orders/2026/09/01/orders_20260901.csv"]


def test_the_simulator_never_starts_a_world_beside_landed_data(tmp_path, monkeypatch):
    """A mistyped or unmounted ECOM_RAW_DIR (missing or empty) beside a warehouse that has landed
    files fails the day: invented rows would land among the real ones."""
    from orchestration.assets_raw import build_raw_exports
    from orchestration.partitions import daily_partitions
    from orchestration.resources import Warehouse

    from ecom.load import load

    exports = tmp_path / "exports"
    generate(exports, date(2026, 9, 1), 1, orders_per_day=5, seed=5, progress=False, workers=1)
    for key in [k for k in os.environ if k.startswith(OWN_PREFIXES)]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ECOM_CHDB_PATH", str(tmp_path / "warehouse"))
    monkeypatch.setenv("ECOM_RAW_DIR", str(exports))
    with session(Settings.from_env()) as client:
        landed = len(load(Settings.from_env(), client).landed)
    assert landed > 0

    (tmp_path / "empty").mkdir()
    for typo, state in ((tmp_path / "exprots", "does not exist"), (tmp_path / "empty", "is empty")):
        monkeypatch.setenv("ECOM_RAW_DIR", str(typo))
        result = dg.materialize([build_raw_exports(daily_partitions(date(2026, 9, 1)))], partition_key="2026-09-02",
                                resources={"warehouse": Warehouse()}, raise_on_error=False)
        assert not result.success, typo
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert f"{typo} {state}, but the warehouse has landed {landed} files" in \
            failure.step_failure_data.user_failure_data.description
        assert not typo.exists() or not any(typo.iterdir()), "nothing simulated"


def test_only_the_newest_dbt_run_folders_are_kept(tmp_path):
    from orchestration.assets_dbt import prune_run_folders

    for i in range(13):
        folder = tmp_path / f"ecom_dbt-run{i:02d}-abc"
        folder.mkdir()
        os.utime(folder, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "manifest.json").write_text("{}")

    prune_run_folders(tmp_path, "ecom_dbt", keep=10)

    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [*(f"ecom_dbt-run{i:02d}-abc" for i in range(4, 13)), "manifest.json"], "room for the next run"


def test_missing_days_are_simulated_in_consecutive_runs():
    days = [date(2026, 9, 1), date(2026, 9, 2), date(2026, 9, 4)]
    assert missing_runs(days) == [(date(2026, 9, 1), 2), (date(2026, 9, 4), 1)]


def test_automation_can_start_stopped():
    assert sensors.default_status({}) == dg.DefaultSensorStatus.RUNNING
    assert sensors.default_status({sensors.AUTOMATION_ENV: "off"}) == dg.DefaultSensorStatus.STOPPED
    assert sensors.default_status({sensors.AUTOMATION_ENV: " No "}) == dg.DefaultSensorStatus.STOPPED
    # A value that is neither on nor off stops the code location with a message naming it,
    # rather than leaving the schedule and sensors running on a mistyped "off".
    with pytest.raises(SettingError, match=rf"{sensors.AUTOMATION_ENV}='disabled' is neither on nor off"):
        sensors.default_status({sensors.AUTOMATION_ENV: "disabled"})
    with pytest.raises(SettingError, match=rf"{SIMULATOR_ENV}='of' is neither on nor off"):
        simulator_enabled({SIMULATOR_ENV: "of"})


def test_the_instance_frees_the_warehouse_slot_of_a_run_that_died(tmp_path):
    # A run killed mid-step keeps its pool slot unless run monitoring frees it: every later run waits.
    shutil.copy2(ROOT / "orchestration" / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] <= 60


def test_a_bad_simulator_setting_stops_the_code_location(monkeypatch):
    monkeypatch.setenv(SIMULATOR_ENV, "maybe")  # not only the first run that misses a day
    with pytest.raises(SettingError, match=rf"{SIMULATOR_ENV}='maybe' is neither on nor off"):
        build_definitions()


def test_a_webhook_that_is_no_http_url_stops_the_code_location(monkeypatch):
    # Checked only when a run failed, a file:// URL was "delivered" and one without a scheme raised then.
    assert sensors.webhook_url({}) is None
    assert sensors.webhook_url({sensors.WEBHOOK_ENV: " https://hooks.example/x "}) == "https://hooks.example/x"
    for url, found in (("file:///tmp/alerts", "starts with file://"), ("hooks.example/T0/secret", "has no scheme"),
                       ("http://", "starts with http://")):
        with pytest.raises(SettingError) as refused:
            sensors.webhook_url({sensors.WEBHOOK_ENV: url})
        assert str(refused.value) == (f"{sensors.WEBHOOK_ENV} is not an http:// or https:// URL (it {found}): set "
                                      "it to the address the alerts are POSTed to, or unset it")
    monkeypatch.setenv(sensors.WEBHOOK_ENV, "file:///tmp/alerts")
    with pytest.raises(SettingError, match=rf"{sensors.WEBHOOK_ENV} is not an http:// or https:// URL"):
        build_definitions()


def test_a_bad_warehouse_setting_stops_the_code_location_with_its_sentence(monkeypatch, tmp_path):
    # Raised as SystemExit, it ended the code server: `dagster dev` never served the UI.
    monkeypatch.setenv("DBT_TARGET", "prod")
    with pytest.raises(SettingError, match=r"DBT_TARGET='prod' is not one of dev, server, cluster"):
        build_definitions()
    monkeypatch.delenv("DBT_TARGET")
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "afile" / "target"))  # a FileExistsError before
    with pytest.raises(SettingError, match=r"DBT_TARGET_PATH is \S+, but \S+ is a file, not a folder"):
        build_definitions()


def test_a_start_date_before_the_fx_rates_stops_the_code_location(monkeypatch):
    # The days before the seed's rates would land and quarantine every order as bad_timestamp.
    first = first_priced_month()
    monkeypatch.setenv(START_DATE_ENV, (first - timedelta(days=1)).isoformat())
    with pytest.raises(SettingError, match=rf"{START_DATE_ENV}=\S+ is before {first}, the first month of the FX rates"):
        build_definitions()
    monkeypatch.setenv(START_DATE_ENV, "2026-02-30")
    with pytest.raises(SettingError, match=rf"{START_DATE_ENV}='2026-02-30' is not a date like"):
        build_definitions()
    monkeypatch.setenv(START_DATE_ENV, first.isoformat())
    build_definitions()


def test_a_landing_check_before_the_first_partition_says_so(location, monkeypatch):
    # Executed on its own, a check with no partition checks every day; a start date in the future has none.
    first = datetime.now(UTC).date() + timedelta(days=2)
    monkeypatch.setenv(START_DATE_ENV, first.isoformat())
    job = build_definitions().resolve_job_def(DAILY_JOB)
    key = dg.AssetCheckKey(dg.AssetKey(["bronze", "payments"]), "a_file_every_day")
    result = job.get_subset(asset_selection=set(), asset_check_selection={key}).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = str(failure.event_specific_data.error)
    assert f"No day to check yet: the first partition, {START_DATE_ENV}={first}," in message


def test_a_held_warehouse_fails_the_step_with_its_one_line_reason(held_warehouse, pipeline):
    _, defs, instance, _ = pipeline
    job = defs.resolve_job_def(DAILY_JOB)
    config = {**RUN_CONFIG, "resources": {"warehouse": {"config": {"wait_seconds": 0.5}}}}
    result = job.execute_in_process(partition_key=DAYS[-1], instance=instance, run_config=config,
                                    raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures
    for event in failures:
        data = event.step_failure_data
        assert data.user_failure_data is not None, data.error
        assert "is in use by process" in data.user_failure_data.description
        assert "point ECOM_CHDB_PATH at another directory" in data.user_failure_data.description


def test_the_simulator_completes_a_day_it_was_stopped_writing(tmp_path, monkeypatch):
    from orchestration.assets_raw import build_raw_exports
    from orchestration.partitions import daily_partitions
    from orchestration.resources import Warehouse

    import ecom.generate as generator

    raw = tmp_path / "raw"
    generator.generate(raw, date(2026, 9, 1), 1, orders_per_day=30, seed=5, progress=False, workers=1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # stopped before the day's payments and manifest
        patch.setattr(generator, "_payment_rows", interrupted)
        with pytest.raises(KeyboardInterrupt):
            generator.generate(raw, date(2026, 9, 2), 1, orders_per_day=30, seed=5, progress=False, workers=1)
    assert not (raw / "payments" / "2026" / "09" / "02").exists()
    for key in [k for k in os.environ if k.startswith(OWN_PREFIXES)]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ECOM_RAW_DIR", str(raw))
    monkeypatch.setenv("ECOM_CHDB_PATH", str(tmp_path / "warehouse"))

    assets = [build_raw_exports(daily_partitions(date(2026, 9, 1)))]
    with monkeypatch.context() as patch:  # the simulator off: the half-written day is named
        patch.setenv(SIMULATOR_ENV, "off")
        off = dg.materialize(assets, partition_key="2026-09-02", resources={"warehouse": Warehouse()},
                             raise_on_error=False)
    [failure] = [e for e in off.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "half written by a generator run that was stopped (writing_20260902.json" in \
        failure.step_failure_data.user_failure_data.description

    result = dg.materialize(assets, partition_key="2026-09-02", resources={"warehouse": Warehouse()})

    assert result.success
    assert (raw / "payments" / "2026" / "09" / "02" / "payments_20260902.csv").is_file()
    assert (raw / "_manifest" / "manifest_20260902.json").is_file()
    assert not list((raw / "_manifest").glob("writing_*"))
