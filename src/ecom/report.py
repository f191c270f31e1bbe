"""`ecom report`: one self-contained HTML dashboard, written from the gold marts.

Every figure is read from gold with one query per panel (`QUERIES`), so a number on the page
is a number in a mart. The page needs no network: plotly.js is inlined once, and the data
behind every chart is also embedded as JSON (`<script type="application/json"
id="report-data">`), which the page's own filters and the tests read.

Filters: the range slider and range buttons of the daily revenue chart set the date range of
every time series and of the headline cards; its dropdown picks a shipping country. Charts
that are not time series (countries, categories, products, pairs, cohorts, data quality)
cover the whole period in gold.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from clickhouse_connect.driver.client import Client
from plotly.offline import get_plotlyjs

from ecom.contract import ENTITIES

# The relations the page reads; all of them must exist (run `ecom run` first).
REQUIRED = (
    "mart_daily_sales", "mart_new_vs_returning", "mart_product_performance", "mart_product_affinity",
    "mart_cohort_retention", "mart_data_quality", "fct_orders", "dim_geography", "dim_products",
)

TOP_N = 10
# The pairs chart ranks by lift the pairs bought together at least this often.
PAIR_MIN_ORDERS = 2

QUERIES: dict[str, str] = {
    "daily": """
        select order_date, orders_placed, revenue_orders, net_revenue_usd, items_sold, aov_usd,
            new_customers, returning_customers, guest_revenue_orders, returned_revenue_usd,
            cancelled_orders, cancellation_rate
        from gold.mart_daily_sales
        order by order_date
    """,
    "new_vs_returning": """
        select order_date, new_customers, returning_customers, guest_orders,
            new_customer_revenue_usd, returning_customer_revenue_usd, guest_revenue_usd
        from gold.mart_new_vs_returning
        order by order_date
    """,
    # No mart has country by day yet: the same figures as mart_daily_sales, from its fact.
    "country_daily": """
        select
            shipping_country_code as country_code,
            order_date,
            count() as revenue_orders,
            toDecimal64(round(sum(net_revenue_usd), 2), 2) as net_revenue_usd
        from gold.fct_orders
        where is_revenue_order
        group by country_code, order_date
        order by country_code, order_date
    """,
    "revenue_by_country": """
        select
            shipping_country_code as country_code,
            count() as revenue_orders,
            toDecimal64(round(sum(net_revenue_usd), 2), 2) as net_revenue_usd
        from gold.fct_orders
        where is_revenue_order
        group by country_code
        order by net_revenue_usd desc, country_code
    """,
    "countries": """
        select country_code, country_name from gold.dim_geography order by country_code
    """,
    "revenue_by_category": """
        select category, sum(units_sold) as units_sold, sum(revenue_usd) as revenue_usd
        from gold.mart_product_performance
        group by category
        order by revenue_usd desc, category
    """,
    "categories": """
        select category, any(category_name) as category_name from gold.dim_products group by category
    """,
    "top_products": f"""
        select product_id, product_name, category, units_sold, revenue_orders, revenue_usd, margin_usd,
            return_rate
        from gold.mart_product_performance
        where product_id != '-1' and revenue_usd > 0
        order by revenue_usd desc, product_id
        limit {TOP_N}
    """,
    "top_pairs": f"""
        select product_a_id, product_a_name, product_b_id, product_b_name, orders_together, support,
            confidence_a_to_b, confidence_b_to_a, lift
        from gold.mart_product_affinity
        where orders_together >= {PAIR_MIN_ORDERS}
        order by lift desc, orders_together desc, product_a_id, product_b_id
        limit {TOP_N}
    """,
    "cohorts": """
        select cohort_month, months_since_first, cohort_size, active_customers, retention_rate, revenue_usd
        from gold.mart_cohort_retention
        order by cohort_month, months_since_first
    """,
    "quarantine": """
        select entity, reason, sum(value) as quarantined_rows
        from gold.mart_data_quality
        where metric = 'quarantined_rows'
        group by entity, reason
        order by entity, reason
    """,
    "reconciliation": """
        select
            entity,
            sumIf(value, metric = 'bronze_rows') as bronze_rows,
            sumIf(value, metric = 'silver_rows') as silver_rows,
            sumIf(value, metric = 'duplicate_rows') as duplicate_rows,
            sumIf(value, metric = 'superseded_rows') as superseded_rows,
            sumIf(value, metric = 'quarantined_rows') as quarantined_rows,
            countIf(metric = 'unbalanced') as file_days,
            sumIf(value, metric = 'unbalanced') as unbalanced_days
        from gold.mart_data_quality
        group by entity
        order by entity
    """,
    "checks": """
        select check_category, metric, sum(value) as value
        from gold.mart_data_quality
        where check_category in ('integrity', 'consistency', 'landing')
        group by check_category, metric
        order by check_category, metric
    """,
}

# Chart id -> (title, the marts it reads, what the number means). The explanations follow
# the metric definitions of the dbt docs (docs/metrics.md, SPEC section 7).
CHARTS: dict[str, tuple[str, str, str]] = {
    "chart-daily-revenue": (
        "Net revenue and revenue orders by day",
        "gold.mart_daily_sales; per country: gold.fct_orders",
        "Bars: net revenue in USD of the revenue orders placed that day (UTC order date): line amounts "
        "minus order discount, shipping and tax excluded, converted at the monthly FX rate of the order "
        "month. Line: revenue orders, orders whose latest status is paid, shipped or delivered and that "
        "have at least one valid line; returned, cancelled and placed orders are not revenue. A day "
        "changes when its orders change status later. Drag the range slider or use the buttons to set "
        "the date range of every time series and of the cards above (their value axes fit the days in "
        "the range); pick a shipping country in the dropdown.",
    ),
    "chart-aov": (
        "Average order value by day",
        "gold.mart_daily_sales",
        "AOV = net revenue USD / revenue orders of the day, in USD. The dotted line is the AOV over the "
        "whole period (total net revenue / total revenue orders), not the average of the daily values.",
    ),
    "chart-new-returning": (
        "New vs returning customers by day",
        "gold.mart_new_vs_returning",
        "New: distinct customers whose first revenue order is on that day. Returning: distinct "
        "customers with a revenue order that day whose first revenue order was on an earlier day. "
        "Guest orders count in revenue but in neither; they are shown as a line of orders.",
    ),
    "chart-country": (
        "Net revenue by shipping country",
        "gold.fct_orders, gold.dim_geography",
        "Net revenue USD of revenue orders over the whole period, by the country the order ships to "
        "(ZZ: a country the shop sent that silver could not map). Hover for revenue orders.",
    ),
    "chart-category": (
        "Revenue by product category",
        "gold.mart_product_performance, gold.dim_products",
        "Line revenue USD of revenue orders over the whole period: quantity x unit price - line "
        "discount, before order-level discounts (those belong to orders, not products), so the bars "
        "add up to a little more than net revenue. `unknown`: lines whose product is not in the "
        "catalog yet.",
    ),
    "chart-top-products": (
        f"Top {TOP_N} products by revenue",
        "gold.mart_product_performance",
        "Line revenue USD of revenue orders over the whole period (before order-level discounts). "
        "Hover for units sold, revenue orders, margin (line revenue - units x current unit cost) and "
        "return rate (units returned / units sold or returned).",
    ),
    "chart-pairs": (
        f"Top {TOP_N} product pairs by lift",
        "gold.mart_product_affinity",
        f"Pairs of distinct products bought in the same revenue order, among those bought together at "
        f"least {PAIR_MIN_ORDERS} times (the mart keeps every pair: one shared order gives two rare "
        "products a high lift alone). Lift = confidence A -> B / share of orders with B: above 1 when "
        "the pair is bought together more often than chance; hover for orders together, support and "
        "confidence both ways.",
    ),
    "chart-cohorts": (
        "Cohort retention",
        "gold.mart_cohort_retention",
        "A cohort is the customers whose first revenue order is in that month. Each cell: share of the "
        "cohort with at least one revenue order N months later (month 0 is 100% by definition); hover "
        "for active customers and their net revenue. Guest orders belong to no cohort.",
    ),
    "chart-quarantine": (
        "Quarantined rows by reason",
        "gold.mart_data_quality",
        "Raw rows silver set aside instead of loading, by the rule they broke and their entity, over all "
        "file days (bad_timestamp, future_timestamp, bad_currency, missing_key, non_positive_quantity, "
        "non_positive_price, bad_discount, bad_number, bad_value, test_order). Quarantined rows are kept in "
        "silver's quarantine tables for inspection; nothing is dropped silently.",
    ),
}

PALETTE = {
    "revenue": "#2f6fde", "orders": "#f08c2e", "aov": "#7a4fd6", "new": "#1fa37a",
    "returning": "#2f6fde", "guest": "#9aa5b1", "country": "#2f6fde", "category": "#1fa37a",
    "product": "#2f6fde", "pair": "#7a4fd6",
}
ENTITY_COLORS = {
    "customers": "#2f6fde", "products": "#1fa37a", "orders": "#f08c2e", "order_items": "#d6455d",
    "payments": "#7a4fd6",
}
PLOT_CONFIG = {"displayModeBar": False, "responsive": True}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


class ReportError(Exception):
    """The report cannot be written (gold not built); the message says what to do."""


# ---------------------------------------------------------------------------- reading gold


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _columns(client: Client, query: str) -> dict[str, list]:
    """A query result as {column: [values]} with JSON-ready values (Decimal -> float, date -> ISO)."""
    result = client.query(query)
    names = result.column_names
    if not names:
        # The embedded engine sends no header with an empty result: ask for the shape instead.
        names = [row[0] for row in client.query(f"DESCRIBE ({query})").result_rows]
    columns: dict[str, list] = {name: [] for name in names}
    for row in result.result_rows:
        for name, value in zip(names, row, strict=True):
            columns[name].append(_json_value(value))
    return columns


def _missing(client: Client) -> list[str]:
    present = {row[0] for row in client.query(
        "SELECT name FROM system.tables WHERE database = 'gold'").result_rows}
    return [f"gold.{name}" for name in REQUIRED if name not in present]


def _kpis(client: Client) -> dict[str, Any]:
    """Headline figures over every day of gold.mart_daily_sales, summed exactly in the engine (its
    days' figures, each rounded to cents: the card is what an analyst adding up the mart gets)."""
    start, end, rows, revenue, orders, new, returned, items, placed, cancelled = client.query("""
        select min(order_date), max(order_date), count(), sum(net_revenue_usd), sum(revenue_orders),
            sum(new_customers), sum(returned_revenue_usd), sum(items_sold), sum(orders_placed),
            sum(cancelled_orders)
        from gold.mart_daily_sales
    """).result_rows[0]
    aov = (Decimal(revenue) / orders).quantize(Decimal("0.01"), ROUND_HALF_UP) if orders else None
    return {
        "start": start.isoformat() if rows else None,
        "end": end.isoformat() if rows else None,
        # Calendar days: the mart has no row for a day without orders.
        "days": (end - start).days + 1 if rows else 0,
        "net_revenue_usd": float(revenue),
        "revenue_orders": int(orders),
        "aov_usd": float(aov) if aov is not None else None,
        "new_customers": int(new),
        "returned_revenue_usd": float(returned),
        "items_sold": int(items),
        "orders_placed": int(placed),
        "cancelled_orders": int(cancelled),
        # Over the period, cancelled orders / orders placed (SPEC 7), not an average of the days' rates.
        "cancellation_rate": int(cancelled) / int(placed) if placed else None,
    }


def read_gold(client: Client) -> dict[str, Any]:
    """Everything the page shows, straight from the marts; what the JSON block embeds."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from ecom.load import _engine_message

    if missing := _missing(client):
        raise ReportError(f"gold is not built ({', '.join(missing)} missing); run `ecom run` first")
    try:
        data: dict[str, Any] = {name: _columns(client, query) for name, query in QUERIES.items()}
        data["kpis"] = _kpis(client)
    except DatabaseError as exc:
        remedy = ""
        if re.search(r"\((UNKNOWN_IDENTIFIER|NO_SUCH_COLUMN_IN_TABLE|THERE_IS_NO_COLUMN)\)", str(exc)):
            # a mart without a column the page reads: gold of an earlier version
            remedy = ("; gold was built by an earlier version: build it with `ecom run` (or `ecom run "
                      "--full-refresh` when it says so) and write the page again")
        raise ReportError(f"reading gold failed ({_engine_message(exc)}){remedy}") from None
    data["sources"] = {chart_id: marts for chart_id, (_, marts, _) in CHARTS.items()}
    return data


# ---------------------------------------------------------------------------- figures


def _layout(fig: go.Figure, height: int = 360, **extra: Any) -> go.Figure:
    fig.update_layout({
        "template": "plotly_white",
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "font": {"family": FONT, "size": 12, "color": "#1f2933"},
        "hoverlabel": {"font": {"family": FONT}},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        **extra,
    })
    fig.update_xaxes(automargin=True, gridcolor="#e6e9ee")
    fig.update_yaxes(automargin=True, gridcolor="#e6e9ee", zerolinecolor="#c9ced6")
    return fig


def _empty(fig: go.Figure, message: str = "No data in gold yet") -> go.Figure:
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#7b8794"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_traces(visible=False)  # a day of zeros would still draw its marker
    fig.update_layout(showlegend=False)
    return fig


def _nothing_to_show(data: dict[str, Any], rows: list) -> str | None:
    """What a chart of revenue says when it has nothing to show (None when it has): none of gold's
    orders is a revenue order yet (a first day's orders are all still placed), or its rows are none."""
    if data["kpis"]["days"] and not data["kpis"]["revenue_orders"]:
        return "No revenue order yet"
    return None if rows else "No data in gold yet"


def _short(text: str, width: int = 38) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _text(value: str) -> str:
    """A value of the data as Plotly shows it: Plotly reads labels and hover text as its own HTML
    subset (`<b>`, `<br>`, `&lt;`), so a catalog name is escaped to be shown as written."""
    return html.escape(value, quote=False)


def _labels(names: list[str], ids: list[str]) -> list[str]:
    """Plotly draws bars with equal labels as one: a label that names two rows (two products of
    one name, or names cut alike) gets each row's id."""
    counts = Counter(names)
    return [f"{name} ({key})" if counts[name] > 1 else name for name, key in zip(names, ids, strict=True)]


# Days, not months: Plotly steps a month back by JavaScript's calendar, where 31 March less a month
# is "31 February", 3 March, so a "1m" from a month's end left out the first days of the month.
RANGE_BUTTONS = [
    {"count": 7, "label": "7d", "step": "day", "stepmode": "backward"},
    {"count": 14, "label": "14d", "step": "day", "stepmode": "backward"},
    {"count": 30, "label": "30d", "step": "day", "stepmode": "backward"},
    {"count": 90, "label": "90d", "step": "day", "stepmode": "backward"},
    {"step": "all", "label": "all"},
]


# A day's bar in milliseconds of the date axis: Plotly sizes bars by the gap between the dates of a
# trace, and one date alone (a country with one day of revenue) got a bar too thin to see.
BAR_WIDTH = 0.75 * 24 * 3600 * 1000


def _every_day(data: dict[str, Any]) -> list[str]:
    """Every calendar day from the first to the last of gold.mart_daily_sales, which has a row only
    for a day with orders: a day without one is drawn as a day of none, not bridged by a line."""
    if not data["kpis"]["days"]:
        return []
    first = date.fromisoformat(data["kpis"]["start"])
    return [(first + timedelta(days=n)).isoformat() for n in range(data["kpis"]["days"])]


def _on_every_day(every: list[str], days: list[str], values: list, missing: Any = 0) -> list:
    """`values` of `days` laid on `every` day, `missing` on the days they leave out."""
    by_day = dict(zip(days, values, strict=True))
    return [by_day.get(day, missing) for day in every]


def _day_axis(days: list[str]) -> dict[str, Any]:
    """A date axis over whole days: from noon before the first to noon of the last, so every bar
    shows whole, the range buttons count back whole days from the end (Plotly's own padding put
    "7d" over 5 of them), and picking a country keeps the axis (one day alone drew a millisecond
    wide). Ticks a day apart at most on a short history, not hours."""
    if not days:
        return {"type": "date"}
    first, last = date.fromisoformat(min(days)[:10]), date.fromisoformat(max(days)[:10])
    axis: dict[str, Any] = {"type": "date", "autorange": False,
                            "range": [f"{first - timedelta(days=1)} 12:00:00", f"{last} 12:00:00"]}
    if (last - first).days < 14:
        axis.update(dtick=24 * 3600 * 1000, tick0=first.isoformat())
    return axis


def _order_ticks(orders: list[int]) -> dict[str, Any]:
    """The orders axis: a tick per order where Plotly would put ticks between whole orders, else
    Plotly's own (set back explicitly: a dropdown's update leaves the previous series' ticks)."""
    if max(orders, default=0) <= 5:
        return {"tickmode": "linear", "tick0": 0, "dtick": 1}
    return {"tickmode": "auto", "nticks": 6}


def fig_daily_revenue(data: dict[str, Any]) -> go.Figure:
    """Revenue bars and revenue-order line; the dropdown swaps in one country's pair of traces."""
    daily, by_country, every = data["daily"], data["country_daily"], _every_day(data)
    names = dict(zip(data["countries"]["country_code"], data["countries"]["country_name"], strict=True))
    fig = go.Figure()
    series = [("All countries", every, _on_every_day(every, daily["order_date"], daily["net_revenue_usd"]),
               _on_every_day(every, daily["order_date"], daily["revenue_orders"]))]
    per_country: dict[str, list] = defaultdict(lambda: [[], [], []])
    for code, day, revenue, orders in zip(by_country["country_code"], by_country["order_date"],
                                          by_country["net_revenue_usd"], by_country["revenue_orders"],
                                          strict=True):
        per_country[code][0].append(day)
        per_country[code][1].append(revenue)
        per_country[code][2].append(orders)
    totals = dict(zip(data["revenue_by_country"]["country_code"],
                      data["revenue_by_country"]["net_revenue_usd"], strict=True))
    for code in sorted(per_country, key=lambda c: (-totals.get(c, 0), c)):
        days, revenue, orders = per_country[code]
        series.append((_text(f"{names.get(code, code)} ({code})"), every, _on_every_day(every, days, revenue),
                       _on_every_day(every, days, orders)))
    for index, (label, days, revenue, orders) in enumerate(series):
        visible = index == 0
        fig.add_bar(x=days, y=revenue, name="Net revenue USD", legendgroup="revenue", visible=visible, width=BAR_WIDTH,
                    marker_color=PALETTE["revenue"], meta=label,
                    hovertemplate="%{x|%a %d %b %Y}<br>net revenue USD %{y:,.2f}<extra>%{meta}</extra>")
        fig.add_scatter(x=days, y=orders, name="Revenue orders", legendgroup="orders", yaxis="y2",
                        visible=visible, mode="lines+markers", marker_size=5, meta=label,
                        line={"color": PALETTE["orders"], "width": 2},
                        hovertemplate="%{x|%a %d %b %Y}<br>revenue orders %{y:,}<extra>%{meta}</extra>")
    buttons = []
    for index, (label, *_rest, orders) in enumerate(series):
        visible = [False] * (2 * len(series))
        visible[2 * index] = visible[2 * index + 1] = True
        # A count of orders has no half: a country of a few orders a day gets a tick per order.
        buttons.append({"label": label, "method": "update",
                        "args": [{"visible": visible},
                                 {f"yaxis2.{key}": value for key, value in _order_ticks(orders).items()}]})
    # The legend on a row of its own under the buttons and the dropdown: beside them it ran under
    # the dropdown in a narrow window.
    _layout(fig, height=450, margin={"l": 10, "r": 10, "t": 90, "b": 10}, bargap=0.25,
            legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "xanchor": "left", "x": 0})
    fig.update_layout(
        yaxis={"title": {"text": "net revenue USD"}, "tickformat": ",.0f", "rangemode": "tozero"},
        yaxis2={"title": {"text": "revenue orders"}, "overlaying": "y", "side": "right",
                "rangemode": "tozero", "showgrid": False, "tickformat": ",~f", **_order_ticks(series[0][3])},
        # The slider's overview scales to every day, whatever range the axes above are fitted to
        # (its yaxis2, which plotly.py does not know, is set so by the page's script).
        xaxis={**_day_axis(daily["order_date"]),
               "rangeslider": {"visible": True, "thickness": 0.08, "yaxis": {"rangemode": "auto"}},
               "rangeselector": {"buttons": RANGE_BUTTONS, "x": 0, "y": 1.16, "yanchor": "bottom",
                                 "bgcolor": "#eef1f5", "activecolor": "#c9d6ee"}},
        updatemenus=[{"type": "dropdown", "buttons": buttons, "active": 0, "x": 1, "xanchor": "right",
                      "y": 1.16, "yanchor": "bottom", "bgcolor": "#ffffff", "bordercolor": "#c9ced6",
                      "showactive": True}],
    )
    if message := _nothing_to_show(data, daily["order_date"]):
        _empty(fig, message)
        # Nothing to pick a range or a country of.
        fig.layout.updatemenus = ()
        fig.update_layout(xaxis={"rangeselector": {"visible": False}, "rangeslider": {"visible": False}})
    return fig


def fig_aov(data: dict[str, Any]) -> go.Figure:
    daily, kpis, every = data["daily"], data["kpis"], _every_day(data)
    fig = go.Figure()
    fig.add_scatter(x=every, y=_on_every_day(every, daily["order_date"], daily["aov_usd"], None), name="AOV USD",
                    mode="lines+markers", marker_size=5, line={"color": PALETTE["aov"], "width": 2}, connectgaps=False,
                    hovertemplate="%{x|%a %d %b %Y}<br>AOV USD %{y:,.2f}<extra></extra>")
    if kpis["aov_usd"] is not None:
        fig.add_hline(y=kpis["aov_usd"], line={"dash": "dot", "color": "#7b8794", "width": 1},
                      annotation_text=f"period AOV {kpis['aov_usd']:,.2f}",
                      annotation_position="top left", annotation_font_color="#52606d")
    _layout(fig, showlegend=False)
    fig.update_layout(xaxis=_day_axis(daily["order_date"]), yaxis={"title": {"text": "USD"}, "tickformat": ",.0f"})
    if message := _nothing_to_show(data, daily["order_date"]):
        _empty(fig, message)
    return fig


def fig_new_returning(data: dict[str, Any]) -> go.Figure:
    rows, every = data["new_vs_returning"], _every_day(data)

    def each_day(column: str) -> list:
        return _on_every_day(every, rows["order_date"], rows[column])

    fig = go.Figure()
    fig.add_bar(x=every, y=each_day("new_customers"), name="New customers", width=BAR_WIDTH,
                marker_color=PALETTE["new"],
                hovertemplate="%{x|%a %d %b %Y}<br>new customers %{y:,}<extra></extra>")
    fig.add_bar(x=every, y=each_day("returning_customers"), name="Returning customers", width=BAR_WIDTH,
                marker_color=PALETTE["returning"],
                hovertemplate="%{x|%a %d %b %Y}<br>returning customers %{y:,}<extra></extra>")
    fig.add_scatter(x=every, y=each_day("guest_orders"), name="Guest orders", mode="lines",
                    line={"color": PALETTE["guest"], "width": 1.5, "dash": "dot"},
                    hovertemplate="%{x|%a %d %b %Y}<br>guest revenue orders %{y:,}<extra></extra>")
    _layout(fig, barmode="stack", bargap=0.25)
    fig.update_layout(xaxis=_day_axis(data["daily"]["order_date"]),
                      yaxis={"title": {"text": "customers"}, "tickformat": ",d"})
    if message := _nothing_to_show(data, rows["order_date"]):
        _empty(fig, message)
    return fig


def fig_country(data: dict[str, Any]) -> go.Figure:
    rows = data["revenue_by_country"]
    names = dict(zip(data["countries"]["country_code"], data["countries"]["country_name"], strict=True))
    labels = [_text(f"{names.get(code, code)} ({code})") for code in rows["country_code"]]
    fig = go.Figure(go.Bar(
        x=rows["net_revenue_usd"], y=labels, orientation="h", marker_color=PALETTE["country"],
        customdata=rows["revenue_orders"], texttemplate="%{x:,.0f}", textposition="auto",
        hovertemplate="%{y}<br>net revenue USD %{x:,.2f}<br>revenue orders %{customdata:,}<extra></extra>",
    ))
    _layout(fig, height=max(360, 26 * len(labels) + 60), showlegend=False)
    fig.update_layout(yaxis={"autorange": "reversed"}, xaxis={"title": {"text": "net revenue USD"},
                                                              "tickformat": ",.0f"})
    if message := _nothing_to_show(data, labels):
        _empty(fig, message)
    return fig


def fig_category(data: dict[str, Any]) -> go.Figure:
    rows = data["revenue_by_category"]
    names = dict(zip(data["categories"]["category"], data["categories"]["category_name"], strict=True))
    labels = [_text(names.get(code) or code) for code in rows["category"]]
    fig = go.Figure(go.Bar(
        x=rows["revenue_usd"], y=labels, orientation="h", marker_color=PALETTE["category"],
        customdata=rows["units_sold"], texttemplate="%{x:,.0f}", textposition="auto",
        hovertemplate="%{y}<br>line revenue USD %{x:,.2f}<br>units sold %{customdata:,}<extra></extra>",
    ))
    _layout(fig, height=max(360, 26 * len(labels) + 60), showlegend=False)
    fig.update_layout(yaxis={"autorange": "reversed"}, xaxis={"title": {"text": "line revenue USD"},
                                                              "tickformat": ",.0f"})
    # The product mart has a row of zeros for every product of the catalog, sold or not.
    if message := _nothing_to_show(data, [label for label, usd in zip(labels, rows["revenue_usd"], strict=True)
                                          if usd]):
        _empty(fig, message)
    return fig


def fig_top_products(data: dict[str, Any]) -> go.Figure:
    rows = data["top_products"]
    labels = _labels([_text(_short(name)) for name in rows["product_name"]], [_text(i) for i in rows["product_id"]])
    custom = list(zip([_text(i) for i in rows["product_id"]], rows["units_sold"], rows["revenue_orders"],
                      rows["margin_usd"],
                      [r if r is not None else 0 for r in rows["return_rate"]],
                      [_text(name) for name in rows["product_name"]], strict=True))
    fig = go.Figure(go.Bar(
        x=rows["revenue_usd"], y=labels, orientation="h", marker_color=PALETTE["product"],
        customdata=custom, texttemplate="%{x:,.0f}", textposition="auto",
        hovertemplate=("%{customdata[5]} (%{customdata[0]})<br>line revenue USD %{x:,.2f}<br>"
                       "units sold %{customdata[1]:,} in %{customdata[2]:,} orders<br>"
                       "margin USD %{customdata[3]:,.2f}<br>return rate %{customdata[4]:.1%}"
                       "<extra></extra>"),
    ))
    _layout(fig, height=400, showlegend=False)
    fig.update_layout(yaxis={"autorange": "reversed"}, xaxis={"title": {"text": "line revenue USD"},
                                                              "tickformat": ",.0f"})
    if message := _nothing_to_show(data, labels):
        _empty(fig, message)
    return fig


def fig_pairs(data: dict[str, Any]) -> go.Figure:
    rows = data["top_pairs"]
    labels = _labels([f"{_text(_short(a, 24))} + {_text(_short(b, 24))}" for a, b in
                      zip(rows["product_a_name"], rows["product_b_name"], strict=True)],
                     [_text(f"{a} + {b}") for a, b in zip(rows["product_a_id"], rows["product_b_id"], strict=True)])
    custom = list(zip([_text(a) for a in rows["product_a_name"]], [_text(b) for b in rows["product_b_name"]],
                      rows["orders_together"],
                      rows["support"], rows["confidence_a_to_b"], rows["confidence_b_to_a"], strict=True))
    fig = go.Figure(go.Bar(
        x=rows["lift"], y=labels, orientation="h", marker_color=PALETTE["pair"], customdata=custom,
        texttemplate="%{x:,.1f}", textposition="auto",
        hovertemplate=("A: %{customdata[0]}<br>B: %{customdata[1]}<br>lift %{x:,.2f}<br>"
                       "orders together %{customdata[2]:,}<br>support %{customdata[3]:.3%}<br>"
                       "confidence A->B %{customdata[4]:.1%}, B->A %{customdata[5]:.1%}<extra></extra>"),
    ))
    _layout(fig, height=400, showlegend=False)
    fig.update_layout(yaxis={"autorange": "reversed"}, xaxis={"title": {"text": "lift"}})
    if not labels:
        _empty(fig, "No pair bought together often enough yet")
    return fig


def fig_cohorts(data: dict[str, Any]) -> go.Figure:
    rows = data["cohorts"]
    cohorts = sorted(set(rows["cohort_month"]))
    months = sorted(set(rows["months_since_first"]))
    cell = {(c, m): (rate, active, size, revenue) for c, m, rate, active, size, revenue in zip(
        rows["cohort_month"], rows["months_since_first"], rows["retention_rate"], rows["active_customers"],
        rows["cohort_size"], rows["revenue_usd"], strict=True)}
    z, text, custom = [], [], []
    for cohort in cohorts:
        z.append([cell[(cohort, m)][0] if (cohort, m) in cell else None for m in months])
        text.append([f"{cell[(cohort, m)][0]:.0%}" if (cohort, m) in cell else "" for m in months])
        custom.append([[cell[(cohort, m)][1], cell[(cohort, m)][2], cell[(cohort, m)][3]]
                       if (cohort, m) in cell else [0, 0, 0] for m in months])
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"+{m}" for m in months], y=[c[:7] for c in cohorts], text=text, texttemplate="%{text}",
        customdata=custom, colorscale="Blues", zmin=0, zmax=1, xgap=2, ygap=2,
        colorbar={"title": {"text": "retention"}, "tickformat": ".0%", "thickness": 12},
        hovertemplate=("cohort %{y}, month %{x}<br>retention %{z:.1%}<br>"
                       "active %{customdata[0]:,} of %{customdata[1]:,}<br>"
                       "net revenue USD %{customdata[2]:,.2f}<extra></extra>"),
    ))
    _layout(fig, height=max(220, 44 * len(cohorts) + 120), showlegend=False)
    fig.update_layout(xaxis={"title": {"text": "months since the first revenue order"}, "type": "category",
                             "side": "top"},
                      yaxis={"title": {"text": "cohort"}, "autorange": "reversed", "type": "category"})
    if message := _nothing_to_show(data, cohorts):
        _empty(fig, message)
    return fig


def fig_quarantine(data: dict[str, Any]) -> go.Figure:
    rows = data["quarantine"]
    totals: dict[str, int] = defaultdict(int)
    for reason, count in zip(rows["reason"], rows["quarantined_rows"], strict=True):
        totals[reason] += count
    reasons = sorted(totals, key=lambda r: (-totals[r], r))
    fig = go.Figure()
    for entity in [e for e in ENTITIES if e in rows["entity"]] + sorted(set(rows["entity"]) - set(ENTITIES)):
        counts = {r: c for e, r, c in zip(rows["entity"], rows["reason"], rows["quarantined_rows"],
                                          strict=True) if e == entity}
        fig.add_bar(y=reasons, x=[counts.get(r, 0) for r in reasons], name=entity, orientation="h",
                    marker_color=ENTITY_COLORS.get(entity, "#9aa5b1"),
                    hovertemplate=f"{entity}<br>%{{y}}: %{{x:,}} rows<extra></extra>")
    _layout(fig, height=max(320, 30 * len(reasons) + 90), barmode="stack")
    fig.update_layout(yaxis={"autorange": "reversed"}, xaxis={"title": {"text": "rows"}, "tickformat": ",d"})
    if not reasons:
        _empty(fig, "No row quarantined")
    return fig


FIGURES = {
    "chart-daily-revenue": fig_daily_revenue,
    "chart-aov": fig_aov,
    "chart-new-returning": fig_new_returning,
    "chart-country": fig_country,
    "chart-category": fig_category,
    "chart-top-products": fig_top_products,
    "chart-pairs": fig_pairs,
    "chart-cohorts": fig_cohorts,
    "chart-quarantine": fig_quarantine,
}

# ---------------------------------------------------------------------------- page

CHECK_LABELS = {
    "orphan_lines": "order lines waiting for their order header (count in no revenue)",
    "lines_of_quarantined_orders": "order lines of quarantined orders (test orders ...)",
    "unknown_product_lines": "order lines whose product is not in the catalog yet",
    "unknown_customer_orders": "orders whose customer is not in the CRM export yet",
    "payments_without_order": "payments whose order is not in silver",
    "payment_mismatch_orders": ("revenue orders whose captured payments differ from the order total, such as "
                                "those with a line priced 100 times too high, which counts in revenue as "
                                "exported (docs/metrics.md lists them)"),
    "uncaptured_revenue_orders": "revenue orders with something to pay and no captured payment yet",
    "rejected_files": ("raw files rejected whole, their names giving their entity and day: their rows are not "
                       "in bronze (bronze.ingest_log says why, and lists misnamed files too)"),
}


def _money(value: float | None) -> str:
    return "–" if value is None else f"${value:,.2f}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _card(card_id: str, label: str, value: str, raw: Any, note: str) -> str:
    return (f'<div class="card kpi"><div class="kpi-label">{html.escape(label)}</div>'
            f'<div class="kpi-value" id="{card_id}" data-value="{raw if raw is not None else ""}">'
            f'{html.escape(value)}</div><div class="kpi-note">{note}</div></div>')


def _kpi_cards(kpis: dict[str, Any]) -> str:
    return "\n".join([
        _card("kpi-net-revenue", "Net revenue USD", _money(kpis["net_revenue_usd"]), kpis["net_revenue_usd"],
              'of revenue orders; returned: <span id="kpi-returned">'
              f'{html.escape(_money(kpis["returned_revenue_usd"]))}</span>'),
        _card("kpi-revenue-orders", "Revenue orders", f"{kpis['revenue_orders']:,}", kpis["revenue_orders"],
              'paid, shipped or delivered, with a valid line; '
              f'<span id="kpi-items">{kpis["items_sold"]:,}</span> items sold; '
              f'<span id="kpi-cancellation">{_share(kpis["cancellation_rate"])}</span> of the orders placed '
              'cancelled'),
        _card("kpi-aov", "Average order value", _money(kpis["aov_usd"]), kpis["aov_usd"],
              "net revenue USD / revenue orders"),
        _card("kpi-new-customers", "New customers", f"{kpis['new_customers']:,}", kpis["new_customers"],
              "first revenue order in the range"),
    ])


def _reconciliation_table(data: dict[str, Any]) -> str:
    rows = data["reconciliation"]
    order = {entity: index for index, entity in enumerate(ENTITIES)}
    body = []
    for index in sorted(range(len(rows["entity"])), key=lambda i: order.get(rows["entity"][i], 99)):
        unbalanced = rows["unbalanced_days"][index]
        status = ('<span class="ok">balanced</span>' if not unbalanced else
                  f'<span class="bad">{unbalanced} of {rows["file_days"][index]} days unbalanced</span>')
        cells = "".join(f'<td class="num">{rows[col][index]:,}</td>' for col in (
            "bronze_rows", "silver_rows", "duplicate_rows", "superseded_rows", "quarantined_rows"))
        body.append(f"<tr><td>{html.escape(rows['entity'][index])}</td>{cells}"
                    f'<td class="num">{rows["file_days"][index]:,}</td><td>{status}</td></tr>')
    if not body:
        body.append('<tr><td colspan="8">No file landed yet</td></tr>')
    return (
        '<div class="scroll"><table class="table" id="reconciliation"><thead><tr><th>entity</th>'
        '<th class="num">bronze</th>'
        '<th class="num">silver</th><th class="num">duplicates</th><th class="num">superseded</th>'
        '<th class="num">quarantined</th><th class="num">file days</th><th>status</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _checks_table(data: dict[str, Any]) -> str:
    found = dict(zip(data["checks"]["metric"], data["checks"]["value"], strict=True))
    # Every check, 0 where it found nothing: the mart has rows only for what was found.
    counts = {metric: found.get(metric, 0) for metric in CHECK_LABELS} | found
    body = "".join(
        f"<tr><td><code>{html.escape(metric)}</code></td><td>{html.escape(CHECK_LABELS.get(metric, ''))}</td>"
        f'<td class="num{" bad" if metric == "rejected_files" and value else ""}">{value:,}</td></tr>'
        for metric, value in counts.items()
    )
    return (f'<div class="scroll"><table class="table" id="checks"><thead><tr><th>check</th><th>what it counts</th>'
            f'<th class="num">count</th></tr></thead><tbody>{body}</tbody></table></div>')


def _chart(chart_id: str, fig: go.Figure, wide: bool = False) -> str:
    title, marts, explanation = CHARTS[chart_id]
    div = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=chart_id, config=PLOT_CONFIG,
                      default_height=f"{fig.layout.height}px")
    return (f'<section class="card chart{" wide" if wide else ""}" aria-labelledby="{chart_id}-title">'
            f'<h3 id="{chart_id}-title">{html.escape(title)}</h3>'
            f'<div class="source">from <code>{html.escape(marts)}</code></div>{div}'
            f'<p class="explain">{html.escape(explanation)}</p></section>')


def _embedded_json(data: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` in it (they occur in strings only, as
    JSON escapes), so neither `</script>` nor `<!--` then `<script`, which keeps the element open
    past its end tag, can change where it ends; non-ASCII characters, U+2028 too, are escaped."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


STYLE = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --accent: #2f6fde; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.5 FONT_STACK; }
header { background: #102a43; color: #f0f4f8; padding: 22px 32px 18px; }
header h1 { margin: 0 0 4px; font-size: 24px; font-weight: 650; letter-spacing: -0.01em; }
header .meta { color: #bcccdc; font-size: 13px; }
header .meta code { color: #d9e2ec; }
main { max-width: 1440px; margin: 0 auto; padding: 20px 24px 40px; }
h3 { font-size: 16px; margin: 0; font-weight: 620; }
h2.section { font-size: 13px; text-transform: uppercase; letter-spacing: 0.08em; color: var(--muted);
  margin: 28px 4px 10px; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
.kpis { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px;
  box-shadow: 0 1px 2px rgba(16, 42, 67, 0.05); }
.wide { grid-column: 1 / -1; }
.kpi-label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: 0.06em; }
.kpi-value { font-size: 28px; font-weight: 680; margin: 2px 0; font-variant-numeric: tabular-nums; }
.kpi-note { color: var(--muted); font-size: 12.5px; }
.range { color: var(--muted); margin: 0 4px 10px; font-size: 13px; }
.range strong { color: var(--ink); }
.source { color: var(--muted); font-size: 12px; margin: 2px 0 6px; }
.explain { color: #3e4c59; font-size: 13px; margin: 8px 2px 0; max-width: 1000px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.scroll { overflow-x: auto; }
.table { width: 100%; border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
.table th { text-align: left; color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--line);
  padding: 6px 8px; }
.table td { border-bottom: 1px solid #f0f2f5; padding: 6px 8px; }
.table .num { text-align: right; }
.ok { color: #0f7b55; font-weight: 600; }
.bad { color: #c62839; font-weight: 600; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 8px 0 30px; }
/* minmax(0, 1fr), not 1fr: a column of 1fr grows to its widest table and the page scrolls sideways. */
@media (max-width: 980px) { .grid, .kpis { grid-template-columns: minmax(0, 1fr); } }
""".replace("FONT_STACK", FONT)

# Ties the date range of the daily chart to the other time series and to the cards.
SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var followers = ['chart-aov', 'chart-new-returning'];
  function money(v) { return v === null ? '\\u2013' : '$' + v.toLocaleString('en-US',
    {minimumFractionDigits: 2, maximumFractionDigits: 2}); }
  function count(v) { return v.toLocaleString('en-US'); }
  function toTime(s) {
    s = String(s).replace(' ', 'T');
    if (s.length === 10) s += 'T00:00:00';
    return Date.parse(s.slice(0, 19) + 'Z');
  }
  var DAY = 86400000;
  function isoDay(time) { return new Date(time).toISOString().slice(0, 10); }
  function update(range) {
    var d = data.daily, lo = range ? toTime(range[0]) : -Infinity, hi = range ? toTime(range[1]) : Infinity;
    var revenue = 0, orders = 0, fresh = 0, returned = 0, items = 0, placed = 0, cancelled = 0;
    for (var i = 0; i < d.order_date.length; i++) {
      var t = toTime(d.order_date[i]);
      if (t < lo || t > hi) continue;
      revenue += d.net_revenue_usd[i]; orders += d.revenue_orders[i]; fresh += d.new_customers[i];
      returned += d.returned_revenue_usd[i]; items += d.items_sold[i];
      placed += d.orders_placed[i]; cancelled += d.cancelled_orders[i];
    }
    revenue = Math.round(revenue * 100) / 100;
    document.getElementById('kpi-net-revenue').textContent = money(revenue);
    document.getElementById('kpi-revenue-orders').textContent = count(orders);
    document.getElementById('kpi-aov').textContent = orders ? money(Math.round(revenue / orders * 100) / 100)
                                                            : money(null);
    document.getElementById('kpi-new-customers').textContent = count(fresh);
    document.getElementById('kpi-returned').textContent = money(Math.round(returned * 100) / 100);
    document.getElementById('kpi-items').textContent = count(items);
    document.getElementById('kpi-cancellation').textContent = placed ?
      (cancelled / placed * 100).toFixed(2) + '%' : '\u2013';
    // The period's calendar days in the range (the rows' rule: a day counts when its midnight is in
    // it), not the mart's rows: the mart has none for a day without orders, drawn as a day of none.
    var first = Math.max(toTime(data.kpis.start), Math.ceil(lo / DAY) * DAY);
    var last = Math.min(toTime(data.kpis.end), Math.floor(hi / DAY) * DAY);
    var days = data.kpis.days && first <= last ? Math.round((last - first) / DAY) + 1 : 0;
    document.getElementById('range-text').textContent = days ? isoDay(first) + ' to ' + isoDay(last) + ' (' + days +
      (days === 1 ? ' day)' : ' days)') : 'no day in the selected range';
  }
  // Every day of the mart, noon to noon, as the page draws it: "all" and a reset of the axis
  // (autorange, which would pad it otherwise, or shrink it to one country's days) come back to it.
  function noon(day, offset) {
    return new Date(toTime(day) + (offset + 0.5) * DAY).toISOString().slice(0, 19).replace('T', ' ');
  }
  var full = data.kpis.days ? [noon(data.kpis.start, -1), noon(data.kpis.end, 0)] : null;
  // Plotly scales a y axis to every day of a trace, not to the days in view: one day of a 100x
  // price kept a narrowed range flat. Each y axis is fitted to what its shown traces draw in the
  // range (stacked bars as their stack), from 0 where the axis starts at 0.
  function fitY(gd, range) {
    if (!gd || !gd.data || !gd._fullLayout) return;
    var lo = range ? toTime(range[0]) : -Infinity, hi = range ? toTime(range[1]) : Infinity;
    var bounds = {}, stacks = {}, barred = {}, stacked = gd._fullLayout.barmode === 'stack';
    gd.data.forEach(function (trace) {
      if (trace.visible === false || trace.visible === 'legendonly') return;
      var axis = 'yaxis' + (trace.yaxis || 'y').slice(1);
      // A bar starts at 0, whatever the axis's rangemode.
      barred[axis] = barred[axis] || trace.type === 'bar';
      for (var i = 0; i < trace.x.length; i++) {
        var t = toTime(trace.x[i]), v = trace.y[i];
        if (t < lo || t > hi || v === null || v === undefined) continue;
        if (stacked && trace.type === 'bar') v = stacks[axis + t] = (stacks[axis + t] || 0) + v;
        var b = bounds[axis] = bounds[axis] || [v, v];
        b[0] = Math.min(b[0], v); b[1] = Math.max(b[1], v);
      }
    });
    // A level line (the period's AOV) stays in view.
    (gd.layout.shapes || []).forEach(function (shape) {
      var b = bounds['yaxis' + (shape.yref || 'y').slice(1)];
      if (b && shape.y0 === shape.y1) { b[0] = Math.min(b[0], shape.y0); b[1] = Math.max(b[1], shape.y0); }
    });
    var layout = {};
    Object.keys(barred).forEach(function (axis) {
      // The figure's own rangemode: Plotly leaves it out of _fullLayout once a range is set.
      var b = bounds[axis], zero = barred[axis] || (gd.layout[axis] || {}).rangemode === 'tozero';
      // No value in the range (days without orders): Plotly's own range, not the last one fitted.
      if (!range || !b) { layout[axis + '.autorange'] = true; return; }
      if (zero) { b[0] = Math.min(b[0], 0); b[1] = Math.max(b[1], 0); }
      var pad = (b[1] - b[0]) * 0.05 || Math.abs(b[1]) * 0.1 || 1;
      layout[axis + '.range'] = [zero && b[0] === 0 ? 0 : b[0] - pad, b[1] + pad];
    });
    if (Object.keys(layout).length) Plotly.relayout(gd, layout);
  }
  function shown(gd) {
    var axis = gd._fullLayout && gd._fullLayout.xaxis;
    return axis && !axis.autorange ? axis.range : null;
  }
  window.addEventListener('load', function () {
    var main = document.getElementById('chart-daily-revenue');
    if (!main || !main.on) return;
    if ((main._fullLayout.xaxis.rangeslider || {}).visible) {
      Plotly.relayout(main, {'xaxis.rangeslider.yaxis2.rangemode': 'auto'});
    }
    main.on('plotly_relayout', function (event) {
      var range;
      if (event['xaxis.range']) range = event['xaxis.range'];
      else if (event['xaxis.range[0]'] !== undefined) range = [event['xaxis.range[0]'], event['xaxis.range[1]']];
      else if (event['xaxis.autorange'] && full) { Plotly.relayout(main, {'xaxis.range': full}); return; }
      else if (event['xaxis.autorange']) range = null;
      else return;
      followers.forEach(function (id) {
        Plotly.relayout(id, range ? {'xaxis.range': range} : {'xaxis.autorange': true});
        fitY(document.getElementById(id), range);
      });
      fitY(main, range);
      update(range);
    });
    // A country picked, or a series hidden in the legend: its axes fitted to what is left.
    [main].concat(followers.map(function (id) { return document.getElementById(id); })).forEach(function (gd) {
      if (!gd || !gd.on) return;
      gd.on('plotly_restyle', function () { fitY(gd, shown(gd)); });
      gd.on('plotly_update', function () { fitY(gd, shown(gd)); });
    });
  });
})();
"""


def render(data: dict[str, Any], generated_at: datetime, title: str = "Sales dashboard") -> str:
    """The whole page as one string: no link to anything outside it."""
    kpis = data["kpis"]
    charts = {chart_id: build(data) for chart_id, build in FIGURES.items()}
    period = (f"{kpis['start']} to {kpis['end']} ({kpis['days']} {'day' if kpis['days'] == 1 else 'days'})"
              if kpis["days"] else "no order in gold yet")
    stamp = generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    payload = {"generated_at": generated_at.isoformat(timespec="seconds"), "charts": list(FIGURES), **data}
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<header>
  <h1>{html.escape(title)}</h1>
  <div class="meta">Online retail in 15 countries, from the gold marts of the warehouse. Orders from
  <strong>{html.escape(period)}</strong> &middot; generated at
  <time id="generated-at" datetime="{generated_at.isoformat(timespec='seconds')}">{stamp}</time>
  &middot; money in USD at monthly FX rates &middot; dates are UTC order dates. Metric definitions:
  <code>docs/metrics.md</code> and the dbt docs site (<code>make docs</code>).</div>
</header>
<main>
  <div class="range">Date range: <strong id="range-text">{html.escape(period)}</strong> &middot; set it with the
  range slider or the buttons of the daily revenue chart; the cards and every time series follow (the
  cards count every country, whichever the chart's dropdown shows).</div>
  <div class="kpis">
{_kpi_cards(kpis)}
  </div>

  <h2 class="section">Sales</h2>
  <div class="grid">
    {_chart("chart-daily-revenue", charts["chart-daily-revenue"], wide=True)}
    {_chart("chart-aov", charts["chart-aov"])}
    {_chart("chart-new-returning", charts["chart-new-returning"])}
    {_chart("chart-country", charts["chart-country"])}
    {_chart("chart-category", charts["chart-category"])}
  </div>

  <h2 class="section">Products and customers</h2>
  <div class="grid">
    {_chart("chart-top-products", charts["chart-top-products"])}
    {_chart("chart-pairs", charts["chart-pairs"])}
    {_chart("chart-cohorts", charts["chart-cohorts"], wide=True)}
  </div>

  <h2 class="section">Data quality</h2>
  <div class="grid">
    {_chart("chart-quarantine", charts["chart-quarantine"])}
    <section class="card" aria-labelledby="reconciliation-title">
      <h3 id="reconciliation-title">Reconciliation, bronze to silver</h3>
      <div class="source">from <code>gold.mart_data_quality</code></div>
      {_reconciliation_table(data)}
      <p class="explain">For every entity and file day, bronze rows = silver rows + duplicates + superseded
      versions + quarantined rows. A day is unbalanced when a row went missing or appeared twice; every
      count covers all file days.</p>
      <h3 style="margin-top: 18px">Integrity, consistency and landing checks</h3>
      {_checks_table(data)}
    </section>
  </div>
</main>
<footer>Written by <code>ecom report</code> from <code>gold</code>; the data behind every chart is embedded in
this page as JSON (<code>#report-data</code>).</footer>
<script type="application/json" id="report-data">{_embedded_json(payload)}</script>
<script type="text/javascript">{SCRIPT}</script>
</body>
</html>
"""


def write_report(client: Client, out_path: Path) -> Path:
    """Read gold through `client` and write the dashboard to `out_path`; returns the path written."""
    # Written through a symbolic link, not over it; written beside the page, then renamed over it,
    # which would replace a device or a fifo with a plain file.
    out_path = Path(os.path.realpath(out_path))
    try:
        not_a_file = out_path.exists() and not out_path.is_file()
    except OSError as exc:  # a name too long, a folder on the way that cannot be searched
        raise ReportError(f"cannot write {out_path} ({exc.strerror or exc}); choose another path with --out or "
                          "ECOM_REPORT_PATH") from None
    if not_a_file:
        raise ReportError(f"cannot write {out_path}: it is not a regular file; choose another path with --out or "
                          "ECOM_REPORT_PATH")
    data = read_gold(client)
    page = render(data, datetime.now(UTC).replace(microsecond=0))
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(page, encoding="utf-8")
        partial.replace(out_path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the partial's own name may be the one too long
            partial.unlink(missing_ok=True)
        # mkdir says "File exists" of a file where a folder of the path should be.
        blocker = next((folder for folder in out_path.parents if folder.exists() and not folder.is_dir()), None)
        why = (f"a file, not a folder, is in the way: {blocker}" if blocker is not None
               else f"{exc.strerror or exc}: {exc.filename or partial}")
        raise ReportError(f"cannot write {out_path} ({why}); choose another path with --out or "
                          "ECOM_REPORT_PATH") from None
    return out_path
