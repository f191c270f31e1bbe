"""The dashboard: the HTML page `ecom report` writes from the gold marts, as the last asset."""

import dagster as dg

from ecom.config import report_path
from ecom.report import ReportError, write_report
from orchestration.partitions import BACKFILL_POLICY
from orchestration.resources import Warehouse

DASHBOARD = dg.AssetKey(["reporting", "dashboard"])


def build_dashboard(inputs: list[dg.AssetKey], owners: list[str], partitions_def: dg.PartitionsDefinition,
                    pool: str | None) -> dg.AssetsDefinition:
    @dg.asset(
        key=DASHBOARD,
        deps=inputs,
        owners=owners,
        group_name="reporting",
        kinds={"html", "plotly"},
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        pool=pool,
        description="The HTML dashboard analysts open (`ecom report`): daily sales, customers, products, "
                    "cohorts and data quality, read from the gold marts. One self-contained page.",
    )
    def dashboard(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        try:
            with warehouse.session() as client:
                # all_balanced blocks this step in its own run, but another run's build can come
                # between that check and this step (the pool orders steps, not runs): the numbers
                # are checked again where they are read.
                unbalanced = int(client.command(  # none before a first build: write_report says what to do
                    "SELECT countIf(NOT is_balanced) FROM silver.reconciliation"
                )) if client.command("EXISTS TABLE silver.reconciliation") else 0
                if unbalanced:
                    raise dg.Failure(
                        f"{unbalanced} entity-days of silver.reconciliation do not balance (a build since this "
                        "run's all_balanced check, another run's perhaps); the dashboard keeps its last page. "
                        "See the all_balanced check of the latest build, and materialize the dashboard again "
                        "once it passes")
                written = write_report(client, report_path()).resolve()
        except ReportError as exc:
            raise dg.Failure(str(exc)) from None
        context.log.info(f"dashboard written to {written}")
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(written)),
            "bytes": written.stat().st_size,
        })

    return dashboard
