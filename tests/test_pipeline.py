"""Raw to gold on generated worlds: figures, dirt accounting, incremental runs, unit tests.

Each test drives the real CLI (`ecom generate`, `ecom run`), real dbt and the embedded
engine, and checks gold against what the raw files and the generator's manifest say.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from contextlib import AbstractContextManager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from conftest import ROOT, World, dbt, ecom_env, run_ecom
from ecom.config import Settings
from ecom.contract import COLUMNS, relative_path
from ecom.reference import files_fingerprint
from ecom.warehouse import session
from reference import daily_sales

SILVER_RULES = ("silver rules 6: exact duplicates are the copies of a row further up the same file; "  # silver_rules()
                "ISO 8601 fractions up to nine digits; ISO 8601 without seconds or with an hour offset; "
                "an apostrophe in an email; an order before its currency has FX rates; "
                "tabs and no-break spaces trimmed; a dollar sign in the currency of an order shipped to Canada "
                "or Mexico and of its payments")


def connect(world_env: dict[str, str]) -> AbstractContextManager[Client]:
    """A session on the world's warehouse, for queries in a row: each opening starts the engine."""
    return session(Settings(chdb_path=Path(world_env["ECOM_CHDB_PATH"])))


def fetch(client: Client, sql: str) -> list[tuple]:
    return client.query(sql).result_rows


def query(world_env: dict[str, str], sql: str) -> list[tuple]:
    with connect(world_env) as client:
        return fetch(client, sql)


def manifest_counts(raw_dir: Path) -> tuple[Counter, Counter]:
    quarantine, duplicates = Counter(), Counter()
    for path in (raw_dir / "_manifest").glob("*.json"):
        for entity, figures in json.loads(path.read_text())["entities"].items():
            duplicates[entity] += figures.get("exact_duplicate", 0)
            for reason, count in figures.get("quarantine", {}).items():
                if count:
                    quarantine[(entity, reason)] += count
    return quarantine, duplicates


def test_daily_sales_equal_a_plain_python_reading_of_the_raw_files(world: World):
    expected = daily_sales(world.raw_dir)
    rows = query(world.env, "SELECT order_date, revenue_orders, net_revenue_usd, items_sold, new_customers, "
                            "returning_customers FROM gold.mart_daily_sales WHERE revenue_orders > 0")
    actual = {
        row[0]: {"revenue_orders": row[1], "net_revenue_usd": Decimal(str(row[2])), "items_sold": row[3],
                 "new_customers": row[4], "returning_customers": row[5]}
        for row in rows
    }
    assert len(expected) >= world.days - 1, "the world should have revenue on (almost) every day"
    assert sorted(actual) == sorted(expected)
    mismatches = {day: (actual[day], expected[day]) for day in expected if actual[day] != expected[day]}
    assert not mismatches


def test_quarantine_and_duplicates_match_the_injected_dirt_reason_by_reason(world: World):
    injected, injected_duplicates = manifest_counts(world.raw_dir)
    assert sum(injected.values()) > 0, "the world is dirty on purpose"
    found = Counter()
    for entity in ("customers", "products", "orders", "order_items", "payments"):
        sql = f"SELECT reason, count() FROM silver.quarantine_{entity} GROUP BY reason"
        for reason, count in query(world.env, sql):
            found[(entity, reason)] = count
    assert found == injected
    duplicates = dict(query(world.env, "SELECT entity, sum(duplicate_rows) FROM silver.reconciliation GROUP BY entity"))
    assert duplicates == {entity: count for entity, count in injected_duplicates.items()}


def test_the_demo_summary_counts_the_quarantined_rows_by_entity_and_reason(world: World):
    from ecom.demo import summary

    injected, _ = manifest_counts(world.raw_dir)
    with connect(world.env) as client:
        text = summary(client)
    assert f"Quarantined rows: {sum(injected.values()):,} " in text, text
    for (entity, reason), count in injected.items():
        assert re.search(rf"^{entity} +\| {reason} +\| +{count}$", text, re.MULTILINE), (entity, reason, text)


def test_every_exported_birth_date_reads_back_as_the_same_day(world: World):
    """A birth date is optional and never quarantines its row, so nothing else would notice it
    read wrong: each one exported is the same day in silver, not NULL, 1970 and before included (a
    Date column holds an earlier day as 1970-01-01), and gold keeps the early ones."""
    ((exported, different, early),) = query(world.env, (
        "SELECT count(), countIf(birth_date IS NULL OR toString(birth_date) != trimBoth(raw_birth_date)), "
        "countIf(birth_date < '1970-01-01') FROM silver.customers_versions WHERE trimBoth(raw_birth_date) != ''"))
    assert exported > 0 and early > 0, "the world has birth dates, some before 1970"
    assert different == 0
    ((in_gold,),) = query(world.env, "SELECT countIf(birth_date < '1970-01-01') FROM gold.dim_customers")
    assert in_gold > 0


def test_the_data_quality_mart_reports_the_same_counts(world: World):
    injected, _ = manifest_counts(world.raw_dir)
    rows = query(world.env, "SELECT entity, reason, sum(value) FROM gold.mart_data_quality "
                            "WHERE metric = 'quarantined_rows' GROUP BY entity, reason HAVING sum(value) > 0")
    assert Counter({(entity, reason): count for entity, reason, count in rows}) == injected
    duplicates = dict(query(world.env, "SELECT entity, sum(value) FROM gold.mart_data_quality "
                                       "WHERE metric = 'duplicate_rows' GROUP BY entity"))
    assert duplicates == dict(manifest_counts(world.raw_dir)[1])


def test_every_entity_and_day_reconciles(world: World):
    rows = query(world.env, "SELECT entity, file_date, bronze_rows, silver_rows + duplicate_rows + "
                            "superseded_rows + quarantined_rows, is_balanced FROM silver.reconciliation")
    assert {row[0] for row in rows} == {"customers", "products", "orders", "order_items", "payments"}
    assert all(row[2] == row[3] and row[4] for row in rows), [row for row in rows if row[2] != row[3]]


def _load_then_count_rejected_files(day: date, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The load `ecom run --date` does, then `dbt build` of the one model that counts rejected files.

    For loads that land nothing (the files are removed, or rejected again): no other model then
    has anything new to build, and a whole `ecom run` would spend its time on them. Were
    something to land, mart_data_quality would refuse to build from stale inputs.
    """
    result = run_ecom("load", "--start", day.isoformat(), "--end", day.isoformat(), "--quiet", env=env)
    build = dbt("build", "-s", "mart_data_quality", "--exclude-resource-type", "unit_test", env=env)
    assert build.returncode == 0, build.stdout
    return result


def test_rejected_files_are_counted_in_the_data_quality_mart_until_they_land_or_are_removed(tmp_path):
    raw_dir = tmp_path / "raw"
    env = ecom_env(raw_dir, tmp_path / "warehouse", DBT_TARGET_PATH=str(tmp_path / "target"),
                   DBT_LOG_PATH=str(tmp_path / "logs"))
    first, second = date(2026, 5, 1), date(2026, 5, 2)
    run_ecom("generate", "--start", first.isoformat(), "--days", "2", "--orders-per-day", "40",
             "--dirty-rate", "0", "--quiet", env=env)
    # A file that cannot land, the same bytes as a landed file under another name, and a name
    # that gives no day (in the ingest log only: the mart counts by entity and day).
    broken = raw_dir / relative_path("payments", second, part=2)
    broken.write_text("payment_id,amount\nP-1,3.50\n")
    copy = raw_dir / relative_path("orders", first, part=3)
    copy.write_bytes((raw_dir / relative_path("orders", first)).read_bytes())
    (raw_dir / "orders" / "orders-may.csv").write_bytes(copy.read_bytes())
    # A segment outside the contract's set: kept, and a warning until the CRM sends it corrected.
    crm = raw_dir / relative_path("customers", second, part=2)
    customer = "C-NEW,Ann,Lee,ann@example.com,,1990-01-01,2026-05-02 09:00:00,DE,Berlin,10115,{},yes,{}\n"
    crm.write_text(",".join(COLUMNS["customers"]) + "\n" + customer.format("gold", "2026-05-02 09:00:00"))

    assert run_ecom("run", "--quiet", env=env, check=False).returncode == 3, "files were rejected"
    segment_test = "test.ecom.accepted_values_dim_customers_segment"
    assert [(r["status"], r["failures"]) for r in json.loads((tmp_path / "target" / "run_results.json").read_text())[
        "results"] if r["unique_id"].startswith(segment_test)] == [("warn", 1)]
    landing = ("SELECT entity, file_date, metric, reason, value FROM gold.mart_data_quality "
               "WHERE check_category = 'landing' ORDER BY entity, file_date")
    assert query(env, landing) == [
        ("orders", first, "rejected_files", "duplicate_content", 1),
        ("payments", second, "rejected_files", "wrong_header", 1),
    ]
    ((logged,),) = query(env, "SELECT count() FROM bronze.ingest_log WHERE status = 'rejected'")
    assert logged == 3

    # An order discounted to nothing: a revenue order no payment is ever captured for, which the
    # mart does not count as waiting for one.
    uncaptured = ("SELECT sum(value) FROM gold.mart_data_quality WHERE metric = 'uncaptured_revenue_orders' "
                  f"AND file_date = '{second}'")
    waiting = query(env, uncaptured)
    (raw_dir / relative_path("orders", second, part=4)).write_text(
        ",".join(COLUMNS["orders"])
        + f"\nO-FREE,,{second} 10:00:00,delivered,web,EUR,0,20.00,,DE,false,{second} 11:00:00\n")
    (raw_dir / relative_path("order_items", second, part=4)).write_text(
        ",".join(COLUMNS["order_items"]) + "\nO-FREE,1,P-FREE,2,10.00,\n")

    # Fixed (the contract's header, no row): it lands, and the mart no longer counts it.
    broken.write_text(",".join(COLUMNS["payments"]) + "\n")
    crm.with_name(crm.name.replace("part2", "part3")).write_text(
        ",".join(COLUMNS["customers"]) + "\n" + customer.format("vip", "2026-05-02 10:00:00"))
    run_ecom("run", "--date", second.isoformat(), "--quiet", env=env)
    assert query(env, landing) == [("orders", first, "rejected_files", "duplicate_content", 1)]
    assert query(env, "SELECT is_revenue_order, order_total FROM gold.fct_orders WHERE order_id = 'O-FREE'") == [
        (True, Decimal(0))]
    assert query(env, uncaptured) == waiting
    assert [r["status"] for r in json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
            if r["unique_id"].startswith(segment_test)] == ["pass"], "the corrected version is current"
    assert query(env, "SELECT segment, is_current FROM gold.dim_customers WHERE customer_id = 'C-NEW' "
                      "ORDER BY valid_from") == [("gold", False), ("vip", True)]

    # Deleted: the next load of its day logs it removed and the mart no longer counts it; a load
    # of another day leaves it alone. A file that names no day is found removed by a load of
    # every day (a dated load does not list the folders of other days).
    copy.unlink()
    (raw_dir / "orders" / "orders-may.csv").unlink()
    run_ecom("load", "--start", second.isoformat(), "--quiet", env=env)
    removed = "SELECT file_path FROM bronze.ingest_log WHERE status = 'removed' ORDER BY file_path"
    assert query(env, removed) == []
    result = _load_then_count_rejected_files(first, env)
    assert "1 file rejected earlier and since removed from the raw directory" in result.stdout
    assert query(env, removed) == [(relative_path("orders", first, part=3).as_posix(),)]
    assert query(env, landing) == []
    run_ecom("load", "--quiet", env=env)
    assert query(env, removed) == [(relative_path("orders", first, part=3).as_posix(),), ("orders/orders-may.csv",)]
    # Put back as it was: rejected, and counted, again.
    copy.write_bytes((raw_dir / relative_path("orders", first)).read_bytes())
    assert _load_then_count_rejected_files(first, env).returncode == 3
    assert query(env, landing) == [("orders", first, "rejected_files", "duplicate_content", 1)]


def _table_fingerprints(env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent content hash of every silver and gold table.

    The columns are hashed as one tuple: `cityHash64` of several arguments is NULL when any of
    them is, and `sum` would skip that row. One session for them all: each opening of the
    warehouse costs the engine's start.
    """
    columns = ("SELECT database, table, arrayMap(c -> c.2, arraySort(groupArray((position, name)))) "
               "FROM system.columns WHERE (database, table) IN "
               "(SELECT database, name FROM system.tables WHERE database IN ('silver', 'gold') "
               "AND engine LIKE '%MergeTree') AND name NOT IN ('_batch_id', '_ingested_at') "
               "GROUP BY database, table ORDER BY database, table")
    fingerprints = {}
    with connect(env) as client:
        for database, table, names in fetch(client, columns):
            column_list = ", ".join(f"`{c}`" for c in names)
            sql = f"SELECT count(), sum(cityHash64(tuple({column_list}))) FROM {database}.`{table}`"
            count, digest = fetch(client, sql)[0]
            fingerprints[f"{database}.{table}"] = (count, digest)
    return fingerprints


@pytest.mark.slow
def test_day_by_day_incremental_runs_equal_one_full_refresh_and_a_planted_fault_fails(tmp_path):
    raw_dir = tmp_path / "raw"
    # A first build of eight days, then three days one by one, across a month's end: the
    # models kept by month rebuild November when December's files bring its status changes,
    # and mart_data_quality counts again only the days the new files reach.
    start, history, days = date(2026, 11, 22), 8, 3
    logs = str(tmp_path / "logs")
    daily = ecom_env(raw_dir, tmp_path / "daily", DBT_TARGET_PATH=str(tmp_path / "t1"), DBT_LOG_PATH=logs)
    full = ecom_env(raw_dir, tmp_path / "full", DBT_TARGET_PATH=str(tmp_path / "t2"), DBT_LOG_PATH=logs)
    run_ecom("generate", "--start", start.isoformat(), "--days", str(history + days), "--orders-per-day", "120",
             "--dirty-rate", "0.10", "--quiet", env=daily)
    # A payment that lands a day before its order header, in the next month: converted at the
    # payment's month until the header lands, then at the order's (SPEC 7), as a full refresh does.
    late_payment, late_header = start + timedelta(days=history + 1), start + timedelta(days=history + 2)
    for entity, day, row in (
        ("payments", late_payment, f"P-LATE,O-LATE,{late_payment} 10:00:00,card,10.00,EUR,captured,"
                                   f"{late_payment} 10:00:00"),
        ("orders", late_header, f"O-LATE,,{late_header - timedelta(days=2)} 23:00:00,paid,web,EUR,0,0,,DE,false,"
                                f"{late_header} 08:00:00"),
    ):
        path = raw_dir / relative_path(entity, day, part=9)
        path.write_text(",".join(COLUMNS[entity]) + "\n" + row + "\n", encoding="utf-8")
    # An order line sent as A, then B, then A again on three days, and one written A, B, A in one
    # file: both are A in the end (SPEC 5: the latest ingestion, then the latest row), though A
    # repeats an earlier row byte for byte. (The third day's file has another line: a file of the
    # same bytes as a landed one is not landed again.)
    first = start + timedelta(days=history - 1)
    reverted = {first: ["O-REVERT,1,P-REVERT,2,10.00,"], first + timedelta(days=1): ["O-REVERT,1,P-REVERT,3,10.00,"],
                first + timedelta(days=2): ["O-REVERT,1,P-REVERT,2,10.00,", "O-REVERT,3,P-REVERT,4,10.00,"],
                first + timedelta(days=3): [f"O-REVERT,2,P-REVERT,{quantity},10.00," for quantity in (1, 5, 1)]}
    (raw_dir / relative_path("orders", first, part=9)).write_text(
        ",".join(COLUMNS["orders"]) + f"\nO-REVERT,,{first} 09:00:00,paid,web,EUR,0,0,,DE,false,{first} 09:00:00\n",
        encoding="utf-8")
    for day, rows in reverted.items():
        (raw_dir / relative_path("order_items", day, part=9)).write_text(
            "\n".join([",".join(COLUMNS["order_items"]), *rows]) + "\n", encoding="utf-8")
    # The one order of October, moved into November by a later version on the first daily run:
    # the models kept by month drop October, as a full refresh never builds it.
    moved = start + timedelta(days=history)
    for day, order_ts in ((start, "2026-10-15 10:00:00"), (moved, f"{start} 10:00:00")):
        (raw_dir / relative_path("orders", day, part=9)).write_text(
            ",".join(COLUMNS["orders"]) + f"\nO-MOVED,,{order_ts},paid,web,EUR,0,0,,DE,false,{day} 08:00:00\n",
            encoding="utf-8")
    (raw_dir / relative_path("order_items", start, part=9)).write_text(
        ",".join(COLUMNS["order_items"]) + "\nO-MOVED,1,P-MOVED,2,10.00,\n", encoding="utf-8")
    run_ecom("run", "--end", (start + timedelta(days=history - 1)).isoformat(), "--quiet", env=daily)
    months = "SELECT DISTINCT order_month FROM gold.int_product_{} ORDER BY order_month"
    assert query(daily, months.format("sales_by_month"))[0] == (date(2026, 10, 1),)
    for offset in range(days):
        if offset == 1:
            # A warehouse built by earlier versions of the models: reconciliation before it was
            # incremental has no watermark column, orders_versions fingerprints of another type
            # (sipHash128's FixedString(16)). The next run builds both anew. And a reference table
            # changed behind dbt's back: the next run loads the seeds again.
            with connect(daily) as client:
                client.command("ALTER TABLE silver.reconciliation DROP INDEX ingested_at_minmax")
                client.command("ALTER TABLE silver.reconciliation DROP COLUMN _ingested_at")
                client.command("ALTER TABLE silver.orders_versions DROP COLUMN _row_hash")
                client.command("ALTER TABLE silver.orders_versions ADD COLUMN _row_hash FixedString(16)")
                client.command("ALTER TABLE reference.countries UPDATE country_name = 'Elsewhere' "
                               "WHERE country_code = 'DE' SETTINGS mutations_sync = 2")
        if offset == 0:
            # A first build of reconciliation stopped between its CREATE and its INSERT: the
            # table is there, empty, with no finished run. The next run counts every day again.
            with connect(daily) as client:
                client.command("TRUNCATE TABLE silver.reconciliation")
                client.command("DELETE FROM ecom_state.incremental_watermarks WHERE model = 'silver.reconciliation'")
        day = start + timedelta(days=history + offset)
        if offset == days - 1:
            # Builds of only some models first. The facts and mart_data_quality build on their
            # last run: from inputs behind the newest landing they would pass for good the rows
            # those get later, so they refuse, naming the models to build first. silver takes
            # the day (no test that reads gold runs with it). The run after it has nothing new
            # to land, and the mart must still catch up with the facts it brings up to date.
            run_ecom("load", "--start", day.isoformat(), "--end", day.isoformat(), "--quiet", env=daily)
            for selection, behind in (("fct_orders+", "silver.orders_versions (not built since the newest landing)"),
                                      ("silver", None),
                                      ("mart_data_quality", "gold.fct_orders (not built since ")):
                result = dbt("build", "-s", selection, env=daily)
                assert result.returncode == (1 if behind else 0), result.stdout[-2000:]
                assert behind is None or behind in result.stdout, result.stdout[-2000:]
        run_ecom("run", "--date", day.isoformat(), "--quiet", env=daily)
        # A daily run leaves the seeds and their tests out while the reference tables hold what
        # the seed files do.
        seeds_built = {result["unique_id"].split(".")[-1] for result in json.loads(
            (tmp_path / "t1" / "run_results.json").read_text())["results"] if result["unique_id"].startswith("seed.")}
        assert seeds_built == (set() if offset != 1 else {path.stem for path in (ROOT / "seeds").glob("*.csv")})
        with connect(daily) as client:
            assert fetch(client, "SELECT country_name FROM reference.countries WHERE country_code = 'DE'") == [
                ("Germany",)]
            if offset == 0:
                landed_days = " UNION ALL ".join(
                    f"SELECT DISTINCT '{entity}', _file_date FROM bronze.{entity}"
                    for entity in ("customers", "products", "orders", "order_items", "payments"))
                assert fetch(client, "SELECT count() FROM silver.reconciliation") == \
                    fetch(client, f"SELECT count() FROM ({landed_days})")
    # The temporary tables the runs dropped are gone with them (profiles.yml), not left for
    # every later process to load until the engine's eight minutes have passed.
    assert query(daily, "SELECT count() FROM system.dropped_tables") == [(0,)]
    run_ecom("run", "--quiet", env=full)

    # The last run of mart_data_quality counted the day it caught up with again, not every
    # entity and day.
    compiled = (tmp_path / "t1" / "compiled" / "ecom" / "models" / "gold" / "mart_data_quality.sql").read_text()
    counted = re.search(r"reconciliation_to_count as \((.*?)\n\),", compiled, re.S).group(1)
    assert "kept as (" in compiled and f"toDate('{day.isoformat()}')" in counted
    assert counted.count("toDate(") < 5 * (history + days), counted

    incremental, refreshed = _table_fingerprints(daily), _table_fingerprints(full)
    assert any(name.startswith("gold.") for name in refreshed)
    assert all(count > 0 for name, (count, _) in refreshed.items() if name.startswith("gold.fct_")), refreshed
    assert incremental == refreshed
    order_month = (late_header - timedelta(days=2)).replace(day=1)
    assert order_month.month != late_payment.month
    reverted_lines = ("SELECT line_number, quantity, _file_date, _row_number FROM silver.order_items "
                      "WHERE order_id = 'O-REVERT' ORDER BY line_number")
    with connect(daily) as client:
        assert fetch(client, "SELECT fx_month FROM gold.fct_payments WHERE payment_id = 'P-LATE'") == [(order_month,)]
        assert fetch(client, reverted_lines) == [
            (1, 2, first + timedelta(days=2), 1), (2, 1, first + timedelta(days=3), 3),
            (3, 4, first + timedelta(days=2), 2)]
        assert fetch(client, "SELECT _file_date, _row_number, quantity, _is_duplicate FROM silver.order_items_versions "
                             "WHERE order_id = 'O-REVERT' ORDER BY _file_date, _row_number") == [
            (first, 1, 2, False), (first + timedelta(days=1), 1, 3, False), (first + timedelta(days=2), 1, 2, False),
            (first + timedelta(days=2), 2, 4, False), (first + timedelta(days=3), 1, 1, True),
            (first + timedelta(days=3), 2, 5, False), (first + timedelta(days=3), 3, 1, False)]
        assert fetch(client, "SELECT item_quantity FROM gold.fct_orders WHERE order_id = 'O-REVERT'") == [(7,)]
        for model in ("sales_by_month", "pairs_by_month"):
            assert fetch(client, months.format(model)) == [(date(2026, 11, 1),), (date(2026, 12, 1),)]

    # A product seen for the first time after mart_data_quality was built: the days on which the
    # mart counted its lines as unknown are counted again, though no file landed to reach them.
    # The mart's table gets the row it would hold had it been built without the product, and
    # the product's versions land again, as new ones, behind dbt's back.
    with connect(daily) as client:
        [(product, day_of_lines)] = fetch(
            client, "SELECT product_id, _file_date FROM silver.order_items WHERE product_id IN "
                    "(SELECT product_id FROM silver.products) AND _file_date < (SELECT max(_file_date) FROM "
                    "silver.order_items) ORDER BY _file_date, product_id LIMIT 1")
        unknown_lines = ("SELECT sum(value) FROM gold.mart_data_quality WHERE entity = 'order_items' "
                         f"AND metric = 'unknown_product_lines' AND file_date = '{day_of_lines}'")
        client.command(
            "INSERT INTO gold.mart_data_quality (entity, file_date, check_category, metric, reason, value, "
            "_ingested_at) SELECT 'order_items', _file_date, 'integrity', "
            "'unknown_product_lines', '', count(), (SELECT max(_ingested_at) FROM gold.mart_data_quality) "
            f"FROM silver.order_items WHERE _file_date = '{day_of_lines}' AND product_id = '{product}' "
            "GROUP BY _file_date")
        client.command("CREATE TABLE default.kept_versions AS silver.products_versions")
        client.command(f"INSERT INTO default.kept_versions SELECT * FROM silver.products_versions "
                       f"WHERE product_id = '{product}'")
        client.command(f"DELETE FROM silver.products_versions WHERE product_id = '{product}'")
        client.command("INSERT INTO silver.products_versions SELECT * REPLACE (now64(3, 'UTC') AS _ingested_at) "
                       "FROM default.kept_versions")
        planted = fetch(client, unknown_lines)[0][0]

    # With no new data, the models kept by month rebuild no month: no partition is swapped in,
    # so no part gets a new block number (merges keep the highest one).
    parts = ("SELECT table, uniqExact(partition), max(max_block_number) FROM system.parts "
             "WHERE database = 'gold' AND table LIKE 'int_product_%_by_month' AND active "
             "GROUP BY table ORDER BY table")
    before = query(daily, parts)
    assert [months for _, months, _ in before] == [2, 2], before
    result = dbt("run", "-s", "int_product_sales_by_month", "int_product_pairs_by_month", "mart_data_quality",
                 env=daily)
    assert result.returncode == 0, result.stdout[-2000:]
    with connect(daily) as client:
        assert fetch(client, parts) == before
        unknown = fetch(client, f"SELECT count() FROM silver.order_items WHERE _file_date = '{day_of_lines}' "
                                "AND product_id NOT IN (SELECT product_id FROM silver.products)")[0][0]
        assert planted > unknown
        assert fetch(client, unknown_lines)[0][0] == unknown

    # A model's `max(_ingested_at)` is read from the rows at or above its last finished run's
    # watermark (newest_ingested_at), and is the same value when there are none: silver.products
    # loses those rows behind dbt's back, silver.payments its finished runs.
    state = "ecom_state.incremental_watermarks"
    finished = f"(SELECT argMax(watermark, recorded_at) FROM {state} WHERE model = 'silver.products')"
    with connect(daily) as client:
        client.command(f"DELETE FROM silver.products WHERE _ingested_at >= {finished}")
        client.command(f"DELETE FROM {state} WHERE model = 'silver.payments'")
    models = ("orders", "products", "payments")
    result = dbt("compile", "--quiet", "--output", "json", "--inline",
                 "select " + ", ".join(f"{{{{ newest_ingested_at(ref('{model}')) }}}}" for model in models), env=daily)
    assert result.returncode == 0, result.stdout[-2000:]
    with connect(daily) as client:
        newest = fetch(client, json.loads(result.stdout)["compiled"])
        assert newest == fetch(client, "SELECT " + ", ".join(f"(SELECT max(_ingested_at) FROM silver.{model})"
                                                             for model in models))
        assert fetch(client, f"SELECT count() FROM silver.products WHERE _ingested_at < {finished}")[0][0] > 0

        # A warehouse whose versions earlier rules of silver built (a table with finished runs and
        # another comment): every run but a full refresh stops, naming it and what to do.
        assert fetch(client, "SELECT DISTINCT comment FROM system.tables WHERE database = 'silver' "
                             "AND name LIKE '%\\_versions'") == [(SILVER_RULES,)]
        client.command("ALTER TABLE silver.payments_versions MODIFY COMMENT "
                       "'exact duplicates: the copies of a row further up the same file'")  # rules 1
    result = dbt("build", "-s", "payments", env=daily)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "silver.payments_versions were built by earlier rules of silver" in result.stdout, result.stdout[-2000:]
    assert "`ecom run --full-refresh`" in result.stdout, result.stdout[-2000:]
    # One older still, from before runs were recorded: it stops as a whole too, emptying nothing
    # (each model took its table for an unfinished first build).
    with connect(daily) as client:
        payments = fetch(client, "SELECT count() FROM silver.payments")
        client.command("DROP DATABASE ecom_state")
    result = dbt("build", "-s", "payments", env=daily)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "more tables were built by an earlier version of the project" in result.stdout, result.stdout[-2000:]
    assert query(daily, "SELECT count() FROM silver.payments") == payments

    # On a warehouse whose tests pass, the checksums of the tests that compare whole tables
    # agree, so their key-by-key checks read nothing.
    compiled = Path(full["DBT_TARGET_PATH"]) / "compiled" / "ecom" / "data_tests" / "gold"
    passed = ("SELECT count() FROM ecom_state.test_passes WHERE status = 'passed' "
              "AND test LIKE 'test.ecom.source_unique_combination_of_columns_bronze_order_items%'")
    with connect(full) as client:
        for test in ("gold_fct_order_items_match_orders", "gold_fct_payments_match_silver",
                     "gold_fct_orders_match_silver"):
            sql = (compiled / f"{test}.sql").read_text()
            gate = sql[:sql.index("\n),", sql.index("tables_agree as ("))] + "\n)\nselect agree from tables_agree"
            assert fetch(client, gate) == [(1,)], test

        # A broken invariant fails the build loudly: lose one silver order line behind dbt's back.
        # No run touches its day again, so it takes the full recount of every day.
        [(lost_order, lost_line)] = fetch(client, "SELECT order_id, line_number FROM silver.order_items "
                                                  "ORDER BY order_id, line_number LIMIT 1")
        client.command(f"DELETE FROM silver.order_items WHERE order_id = '{lost_order}' AND line_number = {lost_line}")
    result = dbt("build", "-s", "reconciliation+", "--full-refresh", env=full)
    assert result.returncode != 0
    assert "reconciliation" in result.stdout and ("FAIL" in result.stdout or "ERROR" in result.stdout)
    # More faults behind dbt's back: a payment lost in silver, the line's customer key in
    # fct_order_items changed to one no dim_customers row has, a cent more on another order's
    # line than its header adds up to, and a third order lost in silver.
    with connect(full) as client:
        [lost_payment] = fetch(client, "SELECT payment_id FROM silver.payments ORDER BY payment_id LIMIT 1")[0]
        [(dearer_order, dearer_line)] = fetch(client, "SELECT order_id, line_number FROM gold.fct_order_items "
                                                      f"WHERE order_id != '{lost_order}' ORDER BY order_id LIMIT 1")
        [gone_order, stale_order, moved_order, unmapped_order, orphaned_order, rated_order] = [row[0] for row in fetch(
            client, "SELECT order_id FROM gold.fct_orders WHERE customer_key != '-1' AND order_id IN (SELECT order_id "
                    f"FROM gold.fct_order_items WHERE product_id != '-1') AND order_id NOT IN ('{lost_order}', "
                    f"'{dearer_order}') ORDER BY order_id LIMIT 6")]
        client.command(f"DELETE FROM silver.payments WHERE payment_id = '{lost_payment}'")
        client.command("ALTER TABLE gold.fct_order_items UPDATE customer_key = 'no-such-customer' "
                       f"WHERE order_id = '{lost_order}' AND line_number = {lost_line} SETTINGS mutations_sync = 2")
        client.command("ALTER TABLE gold.fct_order_items UPDATE line_amount = line_amount + toDecimal64('0.01', 2) "
                       f"WHERE order_id = '{dearer_order}' AND line_number = {dearer_line} SETTINGS mutations_sync = 2")
        client.command(f"DELETE FROM silver.orders WHERE order_id = '{gone_order}'")
        # Stale values, the ids all there: an order's status, a line's product, a line left on
        # the unknown product although its product is in dim_products, an order on the unknown
        # customer although its customer is in dim_customers.
        client.command("ALTER TABLE gold.fct_orders UPDATE order_status = if(order_status = 'placed', 'paid', "
                       f"'placed') WHERE order_id = '{stale_order}' SETTINGS mutations_sync = 2")
        client.command("ALTER TABLE gold.fct_order_items UPDATE source_product_id = 'P-elsewhere' "
                       f"WHERE order_id = '{moved_order}' AND product_id != '-1' SETTINGS mutations_sync = 2")
        client.command("ALTER TABLE gold.fct_order_items UPDATE product_id = '-1' "
                       f"WHERE order_id = '{unmapped_order}' SETTINGS mutations_sync = 2")
        client.command("ALTER TABLE gold.fct_orders UPDATE customer_key = '-1' "
                       f"WHERE order_id = '{orphaned_order}' SETTINGS mutations_sync = 2")
        # An order's lines at another FX rate than their order (the product marts read theirs).
        client.command("ALTER TABLE gold.fct_order_items UPDATE usd_per_unit = usd_per_unit * 2 "
                       f"WHERE order_id = '{rated_order}' SETTINGS mutations_sync = 2")
        # A bronze row landed twice under the same batch and row number fails the source's
        # uniqueness test with one failing combination. The test is scoped: it passed before,
        # and reads the batches of the rows written since (the copy is a new block). A lineage
        # column made Nullable fails the check of their types. (No gold test reads bronze.)
        assert client.command(passed) > 0
        client.command("INSERT INTO bronze.order_items SELECT * FROM bronze.order_items LIMIT 1")
        client.command("ALTER TABLE bronze.order_items MODIFY COLUMN _ingested_at Nullable(DateTime64(3, 'UTC'))")
        # A rate revised in the FX seed after the facts were built: their rows keep the old rate
        # until a full refresh, and a test lists each fact, currency and month at a rate the seed
        # no longer has. A blank seed cell loads as '' (the column is not Nullable): not_blank sees
        # it. (No other test run here reads the reference tables.)
        [(currency, month)] = client.query("SELECT currency_code, fx_month FROM gold.fct_orders "
                                           "ORDER BY order_id LIMIT 1").result_rows
        client.command("ALTER TABLE reference.fx_rates_monthly UPDATE usd_per_unit = usd_per_unit * 2 "
                       f"WHERE currency = '{currency}' AND month = '{month}' SETTINGS mutations_sync = 2")
        client.command("ALTER TABLE reference.countries UPDATE country_name = ' ' WHERE country_code = 'DE' "
                       "SETTINGS mutations_sync = 2")
        # A day lost from the reconciliation, which the test of its rows alone cannot see, and a
        # day in the data-quality mart that the reconciliation does not hold.
        [(entity, day)] = fetch(client, "SELECT entity, file_date FROM silver.reconciliation "
                                        "ORDER BY entity, file_date LIMIT 1")
        client.command(f"DELETE FROM silver.reconciliation WHERE entity = '{entity}' AND file_date = '{day}'")
        client.command("INSERT INTO gold.mart_data_quality SELECT * REPLACE (toDate('2000-01-01') AS file_date) "
                       "FROM gold.mart_data_quality WHERE metric = 'quarantined_rows' AND value > 0 LIMIT 1")
    # Each fails its gold test: the tests of lines against their orders and of payments against
    # silver, which compare checksums of the whole tables first and then group by a hash of the
    # id, name the orders and the payment; the test of the orders the orders; the relationships
    # test, which compares hashes of the keys, the key; the test of late members the lines.
    lines_test, payments_test = "gold_fct_order_items_match_orders", "gold_fct_payments_match_silver"
    orders_test, late_test = "gold_fct_orders_match_silver", "gold_late_members_resolved"
    keys_test = "relationships_present_fct_order_items_customer_key__customer_key__ref_dim_customers_"
    rates_test, blank_test = "gold_usd_amounts_at_the_seeds_rates", "not_blank_countries_country_name"
    landed_test = "silver_reconciliation_counts_every_landed_row"
    quality_test = "gold_data_quality_matches_reconciliation"
    result = dbt("test", "-s", lines_test, payments_test, orders_test, keys_test, late_test,
                 "source:bronze.order_items", rates_test, blank_test, landed_test, quality_test, env=full)
    assert result.returncode != 0, result.stdout[-2000:]
    assert f"FAIL 5 {lines_test}" in result.stdout, result.stdout[-2000:]
    assert f"FAIL 2 {orders_test}" in result.stdout, result.stdout[-2000:]
    for test in (payments_test, keys_test, "source_unique_combination_of_columns_bronze_order_items",
                 "source_lineage_columns_not_nullable_bronze_order_items"):
        assert f"FAIL 1 {test}" in result.stdout, result.stdout[-2000:]
    assert re.search(rf"FAIL \d+ {rates_test}", result.stdout), result.stdout[-2000:]
    assert f"FAIL 1 {blank_test}" in result.stdout, result.stdout[-2000:]
    assert f"FAIL 1 {landed_test}" in result.stdout, result.stdout[-2000:]
    assert re.search(rf"FAIL [12] {quality_test}", result.stdout), result.stdout[-2000:]
    with connect(full) as client:
        assert sorted(fetch(client, (compiled / f"{lines_test}.sql").read_text())) == sorted([
            (lost_order, "lines differ between silver.order_items and fct_order_items"),
            (dearer_order, "lines differ between silver.order_items and fct_order_items"),  # not silver's amount
            (dearer_order, "order totals differ from its lines"),
            (moved_order, "lines differ between silver.order_items and fct_order_items"),
            (rated_order, "lines carry another FX rate than their order"),
        ])
        assert sorted(fetch(client, (compiled / f"{orders_test}.sql").read_text())) == sorted([
            (gone_order, "not in silver.orders"), (stale_order, "differs from silver.orders (a stale version?)")])
        unmapped = fetch(client, (compiled / f"{late_test}.sql").read_text())
        assert {(row[0], row[1].split(" line ")[0]) for row in unmapped} == {
            ("fct_order_items", unmapped_order), ("fct_orders", orphaned_order)}, unmapped
        assert fetch(client, (compiled / f"{payments_test}.sql").read_text()) == \
            [(lost_payment, "not in silver.payments")]
        findings = fetch(client, (compiled / f"{rates_test}.sql").read_text())
    assert {(fact, code, fx_month) for fact, code, fx_month, _, _ in findings} <= \
        {("fct_orders", currency, month), ("fct_payments", currency, month)}, findings
    assert ("fct_orders", currency, month) in {finding[:3] for finding in findings}, findings

    # Scoped data tests (macros/tests/scoped_tests.sql): a test of a delete+insert model reads the
    # rows written since it last passed there. An old order written again behind dbt's back is
    # a new block, so the uniqueness of order_id fails on it, and keeps failing: a failing run
    # records no pass. A pass recorded by other SQL (an edited test) does not narrow the test.
    test = "unique_fct_orders_order_id"
    passes = ("INSERT INTO ecom_state.test_passes (test, relation_uuid, code_hash, watermark, status, invocation_id) "
              "SELECT test, relation_uuid, {hash}, {mark}, 'passed', '' FROM ecom_state.test_passes "
              f"WHERE test LIKE 'test.ecom.{test}.%' AND status = {{status}} ORDER BY recorded_at DESC LIMIT 1")
    with connect(full) as client:
        client.command("INSERT INTO gold.fct_orders SELECT * FROM gold.fct_orders LIMIT 1")
        client.command(passes.format(hash="'other sql'", mark=10**15, status="'passed'"))
    for _ in range(2):
        result = dbt("test", "-s", test, env=full)
        assert result.returncode != 0 and f"FAIL 1 {test}" in result.stdout, result.stdout[-2000:]
    # A pass of this SQL at the table's highest block: the test reads no row, and passes.
    with connect(full) as client:
        client.command(passes.format(hash="code_hash", mark="(SELECT max(_block_number) FROM gold.fct_orders)",
                                     status="'pending'"))
    result = dbt("test", "-s", test, env=full)
    assert result.returncode == 0, result.stdout[-2000:]


def test_a_changed_seed_file_or_setting_loads_the_seeds_again(tmp_path):
    """What `ecom run` compares before it leaves the seeds out: the seed files, their YAML and
    dbt_project.yml (the seeds' settings). The tables' side is in the day-by-day test."""
    shutil.copytree(ROOT / "seeds", tmp_path / "seeds")
    shutil.copy(ROOT / "dbt_project.yml", tmp_path)
    loaded = files_fingerprint(tmp_path)
    for name in ("seeds/fx_rates_monthly.csv", "seeds/_seeds.yml", "dbt_project.yml"):
        path = tmp_path / name
        text = path.read_bytes()
        path.write_bytes(text.replace(b"1", b"2", 1))
        assert files_fingerprint(tmp_path) != loaded, name
        path.write_bytes(text)
        assert files_fingerprint(tmp_path) == loaded, name


def test_store_failures_keeps_the_failing_rows_where_dbt_says(world: World):
    """`dbt test --store-failures` keeps a test's failing rows in a table and prints the query that
    reads them; a project setting that turned storing off had dbt point at a table never made."""
    test = "relationships_present_fct_payments_order_id__order_id__ref_fct_orders_"
    result = dbt("test", "--store-failures", "-s", test, env=world.env)
    assert result.returncode == 0, result.stdout[-3000:]
    results = json.loads((Path(world.env["DBT_TARGET_PATH"]) / "run_results.json").read_text())["results"]
    [outcome] = [r for r in results if r["unique_id"].startswith("test.")]  # and the on-run hooks
    assert outcome["status"] == "warn" and outcome["failures"] > 0, outcome  # payments of test orders
    assert f"select * from {outcome['relation_name']}" in result.stdout, result.stdout[-3000:]
    with session(Settings(chdb_path=world.chdb_path)) as client:
        assert client.query(f"select count() from {outcome['relation_name']}").result_rows == [
            (outcome["failures"],)]


def test_the_unit_tests_pass(world: World):
    """`ecom run` leaves dbt's unit tests out of its build (they check SQL, not data): run them here.

    Plain dbt after `ecom run` with the same settings reuses that run's parse."""
    result = dbt("test", "--select", "test_type:unit", env=world.env)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Unable to do partial parsing" not in result.stdout, result.stdout[:3000]
    target = Path(world.env["DBT_TARGET_PATH"])
    unit_tests = json.loads((target / "manifest.json").read_text())["unit_tests"]
    results = json.loads((target / "run_results.json").read_text())["results"]
    ran = {r["unique_id"]: r["status"] for r in results if r["unique_id"].startswith("unit_test.")}
    assert unit_tests and ran == dict.fromkeys(unit_tests, "pass"), ran
