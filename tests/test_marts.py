"""Every gold mart, row by row and column by column, against a plain-Python recomputation.

The orders and their lines come from the raw files, read as tests/reference.py reads them; the
catalog, the CRM customers and the payments from silver (their own validation is tested
elsewhere); rates and status flags from the seeds. Each expectation follows the definitions
of docs/metrics.md with the standard library only, so a model that drifts from them fails here
with the mart, the row's key and the column named.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from conftest import ROOT, World
from ecom.config import Settings
from ecom.warehouse import session
from reference import Order, cents, first_revenue_orders, fx_month, fx_rates, orders, usd_per_unit


def query(world: World, sql: str) -> tuple[list[str], list[tuple]]:
    with session(Settings(chdb_path=world.chdb_path)) as client:
        result = client.query(sql)
        return list(result.column_names), result.result_rows


def gold(world: World, table: str, *key: str) -> dict[Any, dict[str, Any]]:
    """The rows of a gold table by key (one column: its value; several: a tuple), as dicts."""
    columns, rows = query(world, f"SELECT * FROM gold.{table}")
    by_key = {}
    for values in rows:
        row = dict(zip(columns, values, strict=True))
        by_key[row[key[0]] if len(key) == 1 else tuple(row[column] for column in key)] = row
    return by_key


def same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(expected, actual, rel_tol=1e-9)
    return expected == actual


def label(key: Any) -> str:
    return "(" + ", ".join(map(str, key)) + ")" if isinstance(key, tuple) else str(key)


def assert_rows_equal(mart: str, expected: dict[Any, dict[str, Any]], actual: dict[Any, dict[str, Any]]) -> None:
    """Gold has exactly the expected keys, and every expected column of each row as expected."""
    assert expected, f"{mart}: the world should give it rows"
    problems = [f"{mart} {label(key)}: missing from gold" for key in sorted(expected.keys() - actual.keys())]
    problems += [f"{mart} {label(key)}: in gold, not expected" for key in sorted(actual.keys() - expected.keys())]
    for key in sorted(expected.keys() & actual.keys()):
        problems += [
            f"{mart} {label(key)} {column}: gold has {actual[key][column]!r}, expected {value!r}"
            for column, value in expected[key].items() if not same(value, actual[key][column])
        ]
    assert not problems, f"{len(problems)} differences, the first ones:\n" + "\n".join(problems[:12])


def usd(amounts: Iterable[Decimal]) -> Decimal:
    """Exact USD amounts summed, then rounded to cents as the marts publish them."""
    return cents(sum(amounts, Decimal(0)))


@pytest.fixture(scope="module")
def all_orders(world: World) -> dict[str, Order]:
    return orders(world.raw_dir)


def test_daily_sales(world: World, all_orders: dict[str, Order]):
    first = first_revenue_orders(all_orders)
    placed_by_day: dict[date, list[Order]] = defaultdict(list)
    for order in all_orders.values():
        placed_by_day[order.order_date].append(order)
    expected = {}
    for day, placed in placed_by_day.items():
        revenue = [order for order in placed if order.is_revenue]
        returned = [order for order in placed if order.is_returned]
        cancelled = sum(order.is_cancelled for order in placed)
        customers = {order.customer_id for order in revenue if order.customer_id}
        new = {customer for customer in customers if first[customer].order_date == day}
        net_revenue_usd = sum((order.net_revenue_usd for order in revenue), Decimal(0))
        expected[day] = {
            "orders_placed": len(placed),
            "revenue_orders": len(revenue),
            "net_revenue_usd": cents(net_revenue_usd),
            "items_sold": sum(line.quantity for order in revenue for line in order.lines),
            "aov_usd": cents(net_revenue_usd / len(revenue)) if revenue else None,
            "new_customers": len(new),
            "returning_customers": len(customers - new),
            "guest_revenue_orders": sum(order.customer_id is None for order in revenue),
            "returned_orders": len(returned),
            "returned_revenue_usd": usd(order.net_revenue_usd for order in returned),
            "cancelled_orders": cancelled,
            "cancellation_rate": cancelled / len(placed),
        }
    assert_rows_equal("mart_daily_sales", expected, gold(world, "mart_daily_sales", "order_date"))


def test_new_vs_returning(world: World, all_orders: dict[str, Order]):
    first = first_revenue_orders(all_orders)
    by_day_and_type: dict[date, dict[str, list[Order]]] = defaultdict(lambda: defaultdict(list))
    for order in all_orders.values():
        if order.is_revenue:
            customer_type = ("guest" if order.customer_id is None
                             else "new" if first[order.customer_id].order_date == order.order_date
                             else "returning")
            by_day_and_type[order.order_date][customer_type].append(order)
    expected = {}
    for day, by_type in by_day_and_type.items():
        new = len({order.customer_id for order in by_type["new"]})
        returning = len({order.customer_id for order in by_type["returning"]})
        expected[day] = {
            "new_customers": new,
            "returning_customers": returning,
            "new_customer_orders": len(by_type["new"]),
            "returning_customer_orders": len(by_type["returning"]),
            "guest_orders": len(by_type["guest"]),
            "new_customer_revenue_usd": usd(order.net_revenue_usd for order in by_type["new"]),
            "returning_customer_revenue_usd": usd(order.net_revenue_usd for order in by_type["returning"]),
            "guest_revenue_usd": usd(order.net_revenue_usd for order in by_type["guest"]),
            "returning_customer_share": returning / (new + returning) if new + returning else None,
        }
    assert_rows_equal("mart_new_vs_returning", expected, gold(world, "mart_new_vs_returning", "order_date"))


def months_between(first: date, later: date) -> int:
    return (later.year - first.year) * 12 + later.month - first.month


def add_months(month: date, months: int) -> date:
    index = month.month - 1 + months
    return date(month.year + index // 12, index % 12 + 1, 1)


def test_cohort_retention(world: World, all_orders: dict[str, Order]):
    first = first_revenue_orders(all_orders)
    cohort = {customer: order.order_date.replace(day=1) for customer, order in first.items()}
    cohort_size = defaultdict(int)
    for month in cohort.values():
        cohort_size[month] += 1
    active, revenue = defaultdict(set), defaultdict(list)
    for order in all_orders.values():
        if order.is_revenue and order.customer_id:
            month = cohort[order.customer_id]
            key = (month, months_between(month, order.order_date))
            active[key].add(order.customer_id)
            revenue[key].append(order.net_revenue_usd)
    last_month = max(order.order_date for order in all_orders.values()).replace(day=1)
    expected = {}
    for month, size in cohort_size.items():
        for since in range(months_between(month, last_month) + 1):
            key = (month, since)
            expected[key] = {
                "activity_month": add_months(month, since),
                "cohort_size": size,
                "active_customers": len(active[key]),
                "retention_rate": len(active[key]) / size,
                "revenue_usd": usd(revenue[key]),
            }
    actual = gold(world, "mart_cohort_retention", "cohort_month", "months_since_first")
    assert_rows_equal("mart_cohort_retention", expected, actual)


def test_product_performance(world: World, all_orders: dict[str, Order]):
    _, rows = query(world, "SELECT product_id, unit_cost_usd FROM silver.products")
    unit_cost = dict(rows)
    # product_id -> "revenue" or "returned" -> its lines in such orders: (order_id, quantity, exact USD)
    sales: dict[str, dict[str, list]] = defaultdict(lambda: {"revenue": [], "returned": []})
    for order in all_orders.values():
        kind = "revenue" if order.is_revenue else "returned" if order.is_returned else None
        for line in order.lines if kind else ():
            product_id = line.product_id if line.product_id in unit_cost else "-1"
            sales[product_id][kind].append((order.order_id, line.quantity, line.amount * order.usd_per_unit))
    expected = {}
    for product_id in [*unit_cost, "-1"]:
        sold, returned = sales[product_id]["revenue"], sales[product_id]["returned"]
        units_sold = sum(quantity for _, quantity, _ in sold)
        units_returned = sum(quantity for _, quantity, _ in returned)
        revenue_usd = sum((amount_usd for _, _, amount_usd in sold), Decimal(0))
        cost_usd = units_sold * unit_cost[product_id] if product_id in unit_cost else None
        expected[product_id] = {
            "units_sold": units_sold,
            "revenue_orders": len({order_id for order_id, _, _ in sold}),
            "revenue_usd": cents(revenue_usd),
            "units_returned": units_returned,
            "returned_orders": len({order_id for order_id, _, _ in returned}),
            "returned_revenue_usd": usd(amount_usd for _, _, amount_usd in returned),
            "return_rate": units_returned / (units_sold + units_returned) if units_sold + units_returned else None,
            "cost_usd": None if cost_usd is None else cents(cost_usd),
            "margin_usd": None if cost_usd is None else cents(revenue_usd - cost_usd),
            "margin_rate": (float(revenue_usd - cost_usd) / float(revenue_usd)
                            if cost_usd is not None and revenue_usd > 0 else None),
        }
    assert_rows_equal("mart_product_performance", expected, gold(world, "mart_product_performance", "product_id"))


def affinity_min_orders_together() -> int:
    """The dbt var's default in dbt_project.yml, which the world is built with."""
    text = (ROOT / "dbt_project.yml").read_text()
    return int(re.search(r"^\s*affinity_min_orders_together:\s*(\d+)", text, re.MULTILINE).group(1))


def test_product_affinity(world: World, all_orders: dict[str, Order]):
    _, rows = query(world, "SELECT product_id FROM silver.products")
    catalog = {product_id for (product_id,) in rows}
    baskets = [
        sorted({line.product_id for line in order.lines} & catalog)
        for order in all_orders.values() if order.is_revenue
    ]
    baskets = [basket for basket in baskets if basket]
    orders_with, orders_together = defaultdict(int), defaultdict(int)
    for basket in baskets:
        for position, product_a in enumerate(basket):
            orders_with[product_a] += 1
            for product_b in basket[position + 1:]:
                orders_together[(product_a, product_b)] += 1
    minimum = affinity_min_orders_together()
    assert minimum == 1, "the default keeps every pair bought together (docs/metrics.md)"
    assert any(count == 1 for count in orders_together.values()), "some pairs should share one order only"
    total = len(baskets)
    expected = {
        (product_a, product_b): {
            "orders_together": together,
            "orders_with_a": orders_with[product_a],
            "orders_with_b": orders_with[product_b],
            "total_orders": total,
            "support": together / total,
            "confidence_a_to_b": together / orders_with[product_a],
            "confidence_b_to_a": together / orders_with[product_b],
            "lift": (together / orders_with[product_a]) / (orders_with[product_b] / total),
        }
        for (product_a, product_b), together in orders_together.items() if together >= minimum
    }
    actual = gold(world, "mart_product_affinity", "product_a_id", "product_b_id")
    assert_rows_equal("mart_product_affinity", expected, actual)


def quintiles(values: dict[str, Any]) -> dict[str, int]:
    """1 + floor(5 x (rank - 1) / count), ranked from the worst value up; equal values share
    the lowest rank of their group, and rank - 1 is the number of lower values."""
    ordered = sorted(values.values())
    return {key: 1 + 5 * bisect_left(ordered, value) // len(ordered) for key, value in values.items()}


def rfm_segment(recency: int, frequency: int, monetary: int) -> str:
    if recency >= 4 and frequency >= 4 and monetary >= 4:
        return "champions"
    if recency >= 3 and frequency >= 4:
        return "loyal"
    if recency >= 4 and frequency >= 2:
        return "potential_loyalists"
    if recency >= 4:
        return "new"
    if recency <= 2 and frequency >= 3:
        return "at_risk"
    if recency <= 2:
        return "hibernating"
    return "needs_attention"


def test_customer_metrics(world: World, all_orders: dict[str, Order]):
    _, rows = query(world, "SELECT customer_id, segment, country_code FROM silver.customers")
    crm = {customer_id: (segment, country) for customer_id, segment, country in rows}
    by_customer: dict[str, list[Order]] = {customer_id: [] for customer_id in crm}
    for order in all_orders.values():
        if order.customer_id:
            by_customer.setdefault(order.customer_id, []).append(order)
    as_of = max(order.order_date for order in all_orders.values())

    expected = {}
    for customer_id, placed in by_customer.items():
        revenue = [order for order in placed if order.is_revenue]
        lifetime_value = sum((order.net_revenue_usd for order in revenue), Decimal(0))
        placed_dates = [order.order_date for order in placed]
        revenue_dates = [order.order_date for order in revenue]
        segment, country = crm.get(customer_id, ("unknown", "ZZ"))
        expected[customer_id] = {
            "has_customer_record": customer_id in crm,
            "segment": segment,
            "country_code": country,
            "orders": len(placed),
            "revenue_orders": len(revenue),
            "returned_orders": sum(order.is_returned for order in placed),
            "cancelled_orders": sum(order.is_cancelled for order in placed),
            "first_order_date": min(placed_dates, default=None),
            "last_order_date": max(placed_dates, default=None),
            "first_revenue_order_date": min(revenue_dates, default=None),
            "last_revenue_order_date": max(revenue_dates, default=None),
            "lifetime_value_usd": cents(lifetime_value),
            "average_order_value_usd": cents(lifetime_value / len(revenue)) if revenue else None,
            "recency_days": (as_of - max(revenue_dates)).days if revenue else None,
            "rfm_as_of_date": as_of,
        }

    scored = {customer_id: row for customer_id, row in expected.items() if row["revenue_orders"]}
    recency = quintiles({customer_id: -row["recency_days"] for customer_id, row in scored.items()})
    frequency = quintiles({customer_id: row["revenue_orders"] for customer_id, row in scored.items()})
    monetary = quintiles({customer_id: row["lifetime_value_usd"] for customer_id, row in scored.items()})
    for customer_id, row in expected.items():
        if customer_id in scored:
            scores = (recency[customer_id], frequency[customer_id], monetary[customer_id])
            row |= {"recency_score": scores[0], "frequency_score": scores[1], "monetary_score": scores[2],
                    "rfm_score": "".join(map(str, scores)), "rfm_segment": rfm_segment(*scores)}
        else:
            row |= {"recency_score": None, "frequency_score": None, "monetary_score": None,
                    "rfm_score": None, "rfm_segment": "no_revenue"}
    assert len(set(monetary.values())) == 5, "the world should give all five monetary scores"
    assert_rows_equal("mart_customer_metrics", expected, gold(world, "mart_customer_metrics", "customer_id"))


def test_payments_in_usd(world: World, all_orders: dict[str, Order]):
    _, payments = query(world, "SELECT payment_id, order_id, payment_ts, currency_code, amount FROM silver.payments")
    rates = fx_rates()
    expected = {}
    for payment_id, order_id, payment_ts, currency, amount in payments:
        # The month of the order's order_ts, or of payment_ts while the header has not arrived.
        day = all_orders[order_id].order_date if order_id in all_orders else payment_ts.date()
        expected[payment_id] = {
            "fx_month": fx_month(rates, currency, day),
            "usd_per_unit": usd_per_unit(rates, currency, day),
            "amount_usd": amount * usd_per_unit(rates, currency, day),
        }
    assert_rows_equal("fct_payments", expected, gold(world, "fct_payments", "payment_id"))
