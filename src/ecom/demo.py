"""What `make demo` prints at the end: what landed, was rejected or quarantined, headline figures, where to look."""

from __future__ import annotations

import os
from pathlib import Path

from clickhouse_connect.driver.client import Client

from ecom.cli import format_table
from ecom.config import Settings, project_dir, report_path
from ecom.contract import ENTITIES
from ecom.load import latest_rejections
from ecom.warehouse import session


def _exists(client: Client, database: str, table: str) -> bool:
    return bool(client.command(
        "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {t:String}",
        parameters={"d": database, "t": table},
    ))


def summary(client: Client) -> str:
    lines = ["", "Bronze (rows as landed):"]
    rows = [(entity, int(client.command(f"SELECT count() FROM bronze.`{entity}`"))) for entity in ENTITIES]
    lines.append(format_table(["table", "rows"], rows))
    rejected = [(r.path, r.reason, r.error) for r in latest_rejections(client)]
    lines += ["", f"Rejected files: {len(rejected)} (kept in the raw directory; reasons in bronze.ingest_log)"]
    lines += [f"  {path}: {reason}: {error}" for path, reason, error in rejected]
    if all(_exists(client, "silver", f"quarantine_{entity}") for entity in ENTITIES):
        quarantined = client.query("SELECT entity, reason, rows FROM (" + " UNION ALL ".join(
            f"SELECT {position} AS position, '{entity}' AS entity, reason, count() AS rows "
            f"FROM silver.`quarantine_{entity}` GROUP BY reason"
            for position, entity in enumerate(ENTITIES)
        ) + ") ORDER BY position, rows DESC, reason").result_rows
        lines += ["", f"Quarantined rows: {sum(row[2] for row in quarantined):,} "
                      "(kept in silver.quarantine_<entity> with their reason code)"]
        if quarantined:
            lines.append(format_table(["entity", "reason", "rows"], quarantined))
    if _exists(client, "gold", "mart_daily_sales"):
        head = client.query(
            "SELECT min(order_date), max(order_date), sum(revenue_orders), round(sum(net_revenue_usd), 2), "
            "round(sum(net_revenue_usd) / nullIf(sum(revenue_orders), 0), 2), sum(new_customers) "
            "FROM gold.mart_daily_sales"
        ).result_rows[0]
        lines += ["", "Gold headline (gold.mart_daily_sales):",
                  f"  {head[0]} .. {head[1]}: {head[2]:,} revenue orders, net revenue USD {head[3]:,}, "
                  f"AOV USD {head[4]}, {head[5]:,} new customers"]
    if _exists(client, "silver", "reconciliation"):
        unbalanced = int(client.command("SELECT countIf(NOT is_balanced) FROM silver.reconciliation"))
        verdict = "balanced for every entity and day" if not unbalanced else f"{unbalanced} entity-days NOT balanced"
        lines.append(f"  reconciliation: {verdict}")
    return "\n".join(lines)


def where_to_look(environ: dict[str, str] | None = None) -> str:
    """Paths and URLs of the dashboard, the docs site and the Dagster UI, and how to open each."""
    env = os.environ if environ is None else environ
    root = project_dir()
    report = report_path(env).resolve()
    docs = Path(env.get("DBT_TARGET_PATH") or root / "target")
    docs = (docs if docs.is_absolute() else root / docs) / "index.html"
    return "\n".join([
        "",
        "Where to look:",
        f"  dashboard   {report}" + ("" if report.exists() else "  (not written yet: .venv/bin/ecom report)"),
        f"              {report.as_uri()}  (opens offline in any browser)",
        "  dbt docs    http://127.0.0.1:8080  (make docs"
        + (f"; built in {docs.parent})" if docs.exists() else " generates and serves it)"),
        "  Dagster UI  http://127.0.0.1:3000  (make dev)",
        '  SQL         .venv/bin/ecom sql "select * from gold.mart_daily_sales order by order_date desc limit 7"',
    ])


def main() -> None:
    settings = Settings.from_env()
    with session(settings) as client:
        print(summary(client))
    print(where_to_look())


if __name__ == "__main__":
    main()
