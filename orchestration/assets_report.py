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
                written = write_report(client, report_path()).resolve()
        except ReportError as exc:
            raise dg.Failure(str(exc)) from None
        context.log.info(f"dashboard written to {written}")
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(written)),
            "bytes": written.stat().st_size,
        })

    return dashboard
