"""`ecom report`: the dashboard shows the numbers of the gold marts, offline, in a real browser.

The page embeds the data behind every chart as JSON (`#report-data`); these tests compare it
with their own queries of gold, check that the page needs nothing outside itself, and open it
in headless Chromium: no console error, no request leaving the machine, every chart drawn,
and the date filter moving the headline cards. The browser test saves the page as
dashboard.png (in docs/img with `make screenshots`).
"""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from chromium import chrome, full_page_screenshot, needs_chromium, outside_requests, severe_console_errors
from conftest import SCREENSHOTS, World, dbt, ecom_env, run_ecom
from ecom.config import Settings
from ecom.report import CHARTS, CHECK_LABELS, FIGURES, PAIR_MIN_ORDERS, render, write_report
from ecom.warehouse import session

SCREENSHOT = SCREENSHOTS / "dashboard.png"


def report_data(page: Path) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                      page.read_text(encoding="utf-8"), re.S)
    assert match, "the page embeds no #report-data block"
    return json.loads(match.group(1))


def cents(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


@pytest.fixture(scope="module")
def report(world: World, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "index.html"
    with session(Settings(chdb_path=world.chdb_path)) as client:
        assert write_report(client, out) == out
    return out, report_data(out)


@pytest.fixture(scope="module")
def gold(world: World):
    """A query function on the world's warehouse; opened per query, so no lock outlives a test."""
    def query(sql: str) -> list[tuple]:
        with session(Settings(chdb_path=world.chdb_path)) as client:
            return client.query(sql).result_rows
    return query


def test_daily_figures_are_the_daily_sales_mart(report, gold):
    _, data = report
    rows = gold("select order_date, revenue_orders, net_revenue_usd, aov_usd, new_customers, items_sold "
                "from gold.mart_daily_sales order by order_date")
    assert rows, "the world has no daily sales"
    daily = data["daily"]
    shown = list(zip(daily["order_date"], daily["revenue_orders"], map(cents, daily["net_revenue_usd"]),
                     [None if v is None else cents(v) for v in daily["aov_usd"]], daily["new_customers"],
                     daily["items_sold"], strict=True))
    assert shown == [(d.isoformat(), orders, revenue, aov, new, items)
                     for d, orders, revenue, aov, new, items in rows]


def test_headline_cards_are_the_totals_of_the_mart(report, gold):
    page, data = report
    first, last, revenue, orders, new = gold(
        "select min(order_date), max(order_date), sum(net_revenue_usd), sum(revenue_orders), sum(new_customers) "
        "from gold.mart_daily_sales")[0]
    kpis = data["kpis"]
    assert (kpis["start"], kpis["end"]) == (first.isoformat(), last.isoformat())
    assert kpis["days"] == (last - first).days + 1
    assert cents(kpis["net_revenue_usd"]) == revenue
    assert kpis["revenue_orders"] == orders
    assert kpis["new_customers"] == new
    assert cents(kpis["aov_usd"]) == (revenue / orders).quantize(Decimal("0.01"))
    html = page.read_text(encoding="utf-8")
    assert f'id="kpi-net-revenue" data-value="{kpis["net_revenue_usd"]}">${revenue:,}<' in html
    assert f'id="kpi-revenue-orders" data-value="{orders}">{orders:,}<' in html
    # Cancelled orders over the orders placed in the period, not an average of the days' rates.
    [(rate,)] = gold("select sum(cancelled_orders) / sum(orders_placed) from gold.mart_daily_sales")
    assert f'<span id="kpi-cancellation">{rate:.2%}</span>' in html


def test_countries_add_up_to_the_daily_mart(report, gold):
    """The per-country series (from fct_orders) add up to mart_daily_sales, day by day."""
    _, data = report
    by_day: dict[str, list] = defaultdict(lambda: [0, Decimal(0), 0])
    series = data["country_daily"]
    for day, orders, revenue in zip(series["order_date"], series["revenue_orders"], series["net_revenue_usd"],
                                    strict=True):
        by_day[day][0] += orders
        by_day[day][1] += cents(revenue)
        by_day[day][2] += 1
    mart = {d.isoformat(): (orders, revenue) for d, orders, revenue in gold(
        "select order_date, revenue_orders, net_revenue_usd from gold.mart_daily_sales where revenue_orders > 0")}
    assert set(by_day) == set(mart)
    for day, (orders, revenue) in mart.items():
        assert by_day[day][0] == orders, day
        # Each country's figure is rounded to cents on its own: at most half a cent apart each.
        assert abs(by_day[day][1] - revenue) <= Decimal("0.005") * by_day[day][2], day
    totals = data["revenue_by_country"]
    assert sum(totals["revenue_orders"]) == sum(orders for orders, _ in mart.values())
    assert set(totals["country_code"]) == set(series["country_code"])


def test_products_pairs_and_cohorts_are_their_marts(report, gold):
    _, data = report
    top = gold("select product_id, revenue_usd from gold.mart_product_performance where product_id != '-1' "
               "and revenue_usd > 0 order by revenue_usd desc, product_id limit 10")
    assert list(zip(data["top_products"]["product_id"], map(cents, data["top_products"]["revenue_usd"]),
                    strict=True)) == top
    categories = dict(gold("select category, sum(revenue_usd) from gold.mart_product_performance "
                           "group by category"))
    assert {c: cents(v) for c, v in zip(data["revenue_by_category"]["category"],
                                        data["revenue_by_category"]["revenue_usd"], strict=True)} == categories
    best_lift = gold("select max(lift), count() from gold.mart_product_affinity "
                     f"where orders_together >= {PAIR_MIN_ORDERS}")[0]
    assert gold("select count() from gold.mart_product_affinity")[0][0] > best_lift[1], "pairs of one order"
    pairs = data["top_pairs"]
    assert len(pairs["lift"]) == min(10, best_lift[1])
    assert all(together >= PAIR_MIN_ORDERS for together in pairs["orders_together"]), pairs["orders_together"]
    if pairs["lift"]:
        assert pairs["lift"][0] == pytest.approx(best_lift[0])
        assert pairs["lift"] == sorted(pairs["lift"], reverse=True)
    cohorts = gold("select cohort_month, months_since_first, active_customers, retention_rate "
                   "from gold.mart_cohort_retention order by cohort_month, months_since_first")
    shown = data["cohorts"]
    assert list(zip(shown["cohort_month"], shown["months_since_first"], shown["active_customers"],
                    shown["retention_rate"], strict=True)) == [
        (c.isoformat(), m, active, rate) for c, m, active, rate in cohorts]


def test_data_quality_panel_is_the_data_quality_mart(report, gold):
    _, data = report
    quarantine = gold("select entity, reason, sum(value) from gold.mart_data_quality "
                      "where metric = 'quarantined_rows' group by entity, reason")
    assert quarantine, "a world with dirt has quarantined rows"
    shown = data["quarantine"]
    assert sorted(zip(shown["entity"], shown["reason"], shown["quarantined_rows"], strict=True)) == sorted(
        quarantine)
    recon = data["reconciliation"]
    unbalanced = dict(gold("select entity, countIf(not is_balanced) from silver.reconciliation group by entity"))
    for index, entity in enumerate(recon["entity"]):
        assert recon["bronze_rows"][index] == (recon["silver_rows"][index] + recon["duplicate_rows"][index]
                                               + recon["superseded_rows"][index]
                                               + recon["quarantined_rows"][index]), entity
        assert recon["unbalanced_days"][index] == unbalanced[entity], entity
    assert set(recon["entity"]) == set(unbalanced)


def test_catalog_names_are_shown_as_written_and_cannot_end_the_data_early(report):
    """Names come from the source systems. `<!--` in one and `<script` in another kept the data's
    <script> element open past its end tag (the page's own script never ran); Plotly read `<b>`
    and `&lt;` as markup; two products of one name were drawn as one bar."""
    _, data = report
    data = copy.deepcopy(data)
    top, pairs = data["top_products"], data["top_pairs"]
    assert len(top["product_name"]) >= 4 and pairs["product_a_name"], "the world has products and pairs to show"
    top["product_name"][:4] = ["Arrow set <!-- left", "Book: the <script> element", "<b>bold</b> &lt; co",
                               "Book: the <script> element"]
    pairs["product_a_name"][0] = "</script><!--<script>"
    page = render(data, datetime(2026, 12, 1, tzinfo=UTC))
    block = page.split('<script type="application/json" id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block and ">" not in block, "markup in the data block"
    embedded = json.loads(block)
    assert embedded["top_products"]["product_name"] == top["product_name"]
    assert embedded["top_pairs"]["product_a_name"][0] == "</script><!--<script>"

    products = FIGURES["chart-top-products"](data).data[0]
    assert list(products.y[:4]) == [
        "Arrow set &lt;!-- left", f"Book: the &lt;script&gt; element ({top['product_id'][1]})",
        "&lt;b&gt;bold&lt;/b&gt; &amp;lt; co", f"Book: the &lt;script&gt; element ({top['product_id'][3]})"]
    assert len(set(products.y)) == len(products.y)
    assert products.customdata[2][5] == "&lt;b&gt;bold&lt;/b&gt; &amp;lt; co"
    assert FIGURES["chart-pairs"](data).data[0].y[0].startswith("&lt;/script&gt;&lt;!--&lt;script&gt; + ")


def test_a_catalog_with_nothing_sold_is_no_data(report):
    """The product mart has a row of zeros for every product: with no order in gold, the category
    chart said so as the others do instead of drawing a bar of 0 per category."""
    _, data = report
    data = copy.deepcopy(data)
    data["kpis"].update(days=0, revenue_orders=0)
    data["revenue_by_category"]["revenue_usd"] = [0.0] * len(data["revenue_by_category"]["category"])
    assert [a.text for a in FIGURES["chart-category"](data).layout.annotations] == ["No data in gold yet"]


def without_day(data: dict, gap: str) -> dict:
    """The page's data as gold would have it if no order had been placed on `gap`."""
    data = copy.deepcopy(data)
    for name in ("daily", "new_vs_returning", "country_daily"):
        keep = [i for i, day in enumerate(data[name]["order_date"]) if day != gap]
        data[name] = {column: [values[i] for i in keep] for column, values in data[name].items()}
    return data


def test_a_day_without_orders_is_drawn_as_a_day_of_none(report):
    """The mart has no row for a day without orders: the charts draw it as none (AOV: a gap), not a
    line from the day before to the day after, and the checks that found nothing still show."""
    _, data = report
    every = data["daily"]["order_date"]
    gap = every[len(every) // 2]
    data = without_day(data, gap)
    data["checks"] = {"check_category": [], "metric": [], "value": []}

    daily = FIGURES["chart-daily-revenue"](data)
    assert len(daily.data) == 2 * (1 + len(data["revenue_by_country"]["country_code"]))
    for trace in daily.data:  # revenue and orders of every country and of all
        assert list(trace.x) == every, trace.meta
        assert trace.y[every.index(gap)] == 0, trace.meta
    [aov] = FIGURES["chart-aov"](data).data
    assert list(aov.x) == every and aov.y[every.index(gap)] is None and not aov.connectgaps
    for trace in FIGURES["chart-new-returning"](data).data:
        assert list(trace.x) == every and trace.y[every.index(gap)] == 0, trace.name
    page = render(data, datetime.now(UTC))
    checks = page[page.index('id="checks"'):]
    for metric in CHECK_LABELS:
        assert re.search(rf'<code>{metric}</code></td><td>[^<]*</td><td class="num">0</td>', checks), metric


def test_the_page_needs_nothing_outside_itself(report):
    page, data = report
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+\bsrc=", html), "a script is loaded from elsewhere"
    assert not re.search(r"<link[^>]+\bhref=", html), "a stylesheet or font is loaded from elsewhere"
    assert not re.search(r"""<(img|iframe)[^>]+\bsrc=["']?https?:""", html)
    assert "@import" not in html.split("</style>")[0]
    assert html.count("<script type=\"text/javascript\">/**") == 1, "plotly.js must be inlined exactly once"
    assert data["charts"] == list(CHARTS)
    for chart_id in CHARTS:
        assert f'id="{chart_id}"' in html
    assert re.search(r'<time id="generated-at" datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00">', html)


def test_ecom_report_writes_the_page_and_prints_its_path(world: World, tmp_path):
    out = tmp_path / "nested" / "dashboard.html"
    result = run_ecom("report", "--out", str(out), env=world.env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out.resolve())
    assert report_data(out)["kpis"]["revenue_orders"] > 0
    # A file where a folder of the path should be is named, not reported as "File exists".
    (tmp_path / "a-file").write_text("")
    result = run_ecom("report", "--out", str(tmp_path / "a-file" / "sub" / "index.html"), env=world.env,
                      check=False, timeout=120)
    assert result.returncode == 1 and f"a file, not a folder, is in the way: {tmp_path / 'a-file'}" in result.stderr
    # A symbolic link is written through, and stays a link; a fifo (or a device) is not replaced.
    link = tmp_path / "latest.html"
    link.symlink_to(out)
    out.write_text("stale")
    result = run_ecom("report", "--out", str(link), env=world.env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and report_data(out)["kpis"]["revenue_orders"] > 0
    os.mkfifo(fifo := tmp_path / "fifo")
    result = run_ecom("report", "--out", str(fifo), env=world.env, check=False, timeout=120)
    assert result.returncode == 1 and f"cannot write {fifo}: it is not a regular file" in result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_first_day_without_revenue_shows_empty_charts_that_say_so(tmp_path):
    # A first day's orders are all still placed: gold has orders and no revenue order. The charts
    # of revenue drew a zero-height day with sub-second ticks, or said gold had no data.
    env = ecom_env(tmp_path / "raw", tmp_path / "warehouse")
    run_ecom("generate", "--days", "1", "--orders-per-day", "30", "--quiet", env=env)
    run_ecom("load", "--quiet", env=env)
    # Only what the page reads: the dashboard's exposure and everything upstream of it. A first
    # day's `ecom run`, data tests and all, is test_cli's.
    build = dbt("build", "--select", "+exposure:sales_dashboard", "--exclude-resource-type", "test", "unit_test",
                env=env)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-2000:]
    out = tmp_path / "index.html"
    run_ecom("report", "--out", str(out), env=env, timeout=120)
    data = report_data(out)
    assert data["kpis"]["revenue_orders"] == 0 and data["kpis"]["days"] == 1
    page = out.read_text(encoding="utf-8")
    assert page.count("No revenue order yet") >= 7 and "No data in gold yet" not in page
    # Nothing to pick a range or a country of: no buttons, no dropdown over the empty chart.
    daily = page[page.index('Plotly.newPlot(') : page.index('"chart-aov"')]
    assert '"chart-daily-revenue"' in daily and '"updatemenus"' not in daily
    assert re.search(r'"rangeslider":\{(\{[^{}]*\}|[^{}])*"visible":false', daily), daily[-3000:]
    assert re.search(r'"rangeselector":\{"buttons":\[(\{[^{}]*\},?)*\][^{}]*"visible":false', daily), daily[-3000:]

    # Gold of an earlier version, without a column the page reads: one line that says what to do.
    with session(Settings(chdb_path=tmp_path / "warehouse")) as client:
        client.command("ALTER TABLE gold.mart_daily_sales DROP COLUMN guest_revenue_orders")
    result = run_ecom("report", "--out", str(out), env=env, check=False, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: reading gold failed (") and "guest_revenue_orders" in line, line
    assert line.endswith("; gold was built by an earlier version: build it with `ecom run` (or `ecom run "
                         "--full-refresh` when it says so) and write the page again"), line


def test_ecom_report_says_what_to_do_before_gold_exists(tmp_path):
    env = ecom_env(tmp_path / "raw", tmp_path / "warehouse")
    result = run_ecom("report", "--out", str(tmp_path / "index.html"), env=env, check=False, timeout=120)
    assert result.returncode == 1
    assert "run `ecom run` first" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "index.html").exists()


# Sets the date range of the daily chart as the range slider does, then reads what followed it.
SET_RANGE = """
var done = arguments[arguments.length - 1];
Plotly.relayout('chart-daily-revenue', {'xaxis.range': [arguments[0], arguments[1]]}).then(function () {
  setTimeout(function () {
    done([document.getElementById('kpi-revenue-orders').textContent,
          document.getElementById('kpi-net-revenue').textContent,
          document.getElementById('chart-aov')._fullLayout.xaxis.range.map(String)]);
  }, 300);
});
"""

VISIBLE_TRACES = """
return document.getElementById('chart-daily-revenue').data
  .filter(function (trace) { return trace.visible === true; })
  .map(function (trace) { return [trace.meta, trace.y]; });
"""


def pick_country(driver, index: int) -> None:
    """Open the dropdown of the daily chart and click its `index`-th entry (0 = all countries)."""
    from selenium.common.exceptions import ElementClickInterceptedException, ElementNotInteractableException
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#chart-daily-revenue .updatemenu-header-group").click()
    time.sleep(0.3)
    entry = driver.find_elements(By.CSS_SELECTOR, "#chart-daily-revenue .updatemenu-dropdown-button")[index]
    try:
        entry.click()
    except (ElementClickInterceptedException, ElementNotInteractableException):
        # The open list scrolls to the active entry; entries above it sit under the header, entries
        # far below it out of the list's view.
        driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}));", entry)
    time.sleep(0.3)


@pytest.mark.browser
@needs_chromium
def test_dashboard_in_a_browser(report):
    from selenium.webdriver.common.by import By

    page, data = report
    with chrome(width=1400, height=1000) as driver:
        driver.set_script_timeout(20)
        driver.get(page.as_uri())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and driver.execute_script(
                "return document.querySelectorAll('.plotly-graph-div .main-svg').length") < len(CHARTS):
            time.sleep(0.2)

        drawn = driver.execute_script("""
            return Array.from(document.querySelectorAll('.plotly-graph-div')).map(function (gd) {
              return [gd.id, gd.querySelectorAll('svg.main-svg').length, (gd.data || []).length];
            });""")
        assert [chart_id for chart_id, _, _ in drawn] == list(CHARTS)
        for chart_id, svgs, traces in drawn:
            assert svgs > 0 and traces > 0, f"{chart_id} is not drawn"

        # The chart draws what the JSON block holds, every day of the period (0 on a day without any).
        first = date.fromisoformat(data["kpis"]["start"])
        every = [(first + timedelta(days=n)).isoformat() for n in range(data["kpis"]["days"])]

        def each_day(days: list[str], values: list) -> list:
            by_day = dict(zip(days, values, strict=True))
            return [by_day.get(day, 0) for day in every]

        assert driver.execute_script(VISIBLE_TRACES)[0] == [
            "All countries", each_day(data["daily"]["order_date"], data["daily"]["net_revenue_usd"])]

        # The country dropdown swaps in the revenue and orders of one country.
        pick_country(driver, 1)
        (label, revenue), (label_orders, _) = driver.execute_script(VISIBLE_TRACES)
        assert label == label_orders != "All countries"
        country = label.rsplit("(", 1)[1].rstrip(")")
        series = data["country_daily"]
        mine = [i for i, code in enumerate(series["country_code"]) if code == country]
        assert revenue == each_day([series["order_date"][i] for i in mine],
                                   [series["net_revenue_usd"][i] for i in mine])
        pick_country(driver, 0)
        assert driver.execute_script(VISIBLE_TRACES)[0][0] == "All countries"

        # The date range of the daily chart drives the cards and the other time series.
        days = data["daily"]["order_date"]
        start, end = days[1], days[-2]
        orders_text, revenue_text, aov_range = driver.execute_async_script(SET_RANGE, start, end)
        inside = [i for i, day in enumerate(days) if start <= day <= end]
        assert orders_text == f"{sum(data['daily']['revenue_orders'][i] for i in inside):,}"
        assert revenue_text == f"${sum(cents(data['daily']['net_revenue_usd'][i]) for i in inside):,}"
        assert [bound[:10] for bound in aov_range] == [start, end]
        driver.execute_script("Plotly.relayout('chart-daily-revenue', {'xaxis.autorange': true});")
        time.sleep(0.5)
        assert driver.find_element(By.ID, "range-text").text == f"{days[0]} to {days[-1]} ({len(days)} days)"
        # Every day from noon to noon: Plotly's own autorange pads the axis by its own measure.
        axis = driver.execute_script("return document.getElementById('chart-daily-revenue')._fullLayout.xaxis.range")
        assert [bound[:16] for bound in axis] == [
            f"{date.fromisoformat(days[0]) - timedelta(days=1)} 12:00", f"{days[-1]} 12:00"], axis

        # "7d" is the last seven days (Plotly's padding of the axis made it five), and a country
        # keeps the axis of every day.
        [button] = [b for b in driver.find_elements(By.CSS_SELECTOR, "#chart-daily-revenue .rangeselector .button")
                    if b.text == "7d"]
        button.click()
        time.sleep(0.5)
        assert driver.find_element(By.ID, "range-text").text == f"{days[-7]} to {days[-1]} (7 days)"
        pick_country(driver, len(data["revenue_by_country"]["country_code"]))  # the smallest
        axis = driver.execute_script("return document.getElementById('chart-daily-revenue')._fullLayout.xaxis.range")
        assert [bound[:10] for bound in axis] == [(date.fromisoformat(days[-7]) - timedelta(days=1)).isoformat(),
                                                  days[-1]]
        # An axis of orders has no tick between whole orders, for a country of few orders too.
        ticks = "return document.getElementById('chart-daily-revenue')._fullLayout.yaxis2.dtick"
        assert driver.execute_script(ticks) >= 1 and float(driver.execute_script(ticks)).is_integer()
        pick_country(driver, 0)  # and all countries get Plotly's own ticks back
        mode = "return document.getElementById('chart-daily-revenue')._fullLayout.yaxis2.tickmode"
        assert driver.execute_script(mode) == ("linear" if max(data["daily"]["revenue_orders"]) <= 5 else "auto")
        # The buttons count days back from the end of the range shown: "7d" of a range ending two
        # days early, then "30d", which reaches past the first of the 14 days. (Months would be
        # counted by JavaScript's calendar, in which 31 March less a month is 3 March.)
        buttons = {b.text: b
                   for b in driver.find_elements(By.CSS_SELECTOR, "#chart-daily-revenue .rangeselector .button")}
        assert list(buttons) == ["7d", "14d", "30d", "90d", "all"]
        driver.execute_async_script(SET_RANGE, f"{days[0]} 00:00:00", f"{days[-3]} 12:00:00")
        for label, first in (("7d", days[-9]), ("30d", days[0])):
            buttons[label].click()
            time.sleep(0.5)
            shown = days[days.index(first):len(days) - 2]
            assert driver.find_element(By.ID, "range-text").text == f"{first} to {days[-3]} ({len(shown)} days)"
        driver.execute_script("Plotly.relayout('chart-daily-revenue', {'xaxis.autorange': true});")  # every day

        problems = severe_console_errors(driver)
        outside = outside_requests(driver)
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)
        full_page_screenshot(driver, SCREENSHOT, 1400)

        # A day without orders in the range counts as a day of the range, at its edge too. The
        # first day sold a hundred times its revenue, AOV and new customers on this page.
        gap = days[-3]
        spiked = without_day(data, gap)
        for name, column in (("daily", "net_revenue_usd"), ("daily", "aov_usd"), ("new_vs_returning", "new_customers")):
            spiked[name][column][0] *= 100
        (gapped := page.with_name("gap.html")).write_text(render(spiked, datetime.now(UTC)))
        driver.get(gapped.as_uri())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not driver.execute_script(
                "var g = document.getElementById('chart-daily-revenue'); return !!(g && g.on && g._fullLayout);"):
            time.sleep(0.2)
        for end, shown in ((gap, f"{gap} to {gap} (1 day)"), (days[-1], f"{gap} to {days[-1]} (3 days)")):
            orders_text, *_ = driver.execute_async_script(SET_RANGE, f"{days[-4]} 12:00:00", f"{end} 12:00:00")
            assert driver.find_element(By.ID, "range-text").text == shown
        assert orders_text == f"{sum(data['daily']['revenue_orders'][-2:]):,}"

        # Each y axis fits the days in view (Plotly's own scale is every day's, the spike's), for
        # the country picked too, and comes back to every day with the whole period.
        def tops() -> list[float]:
            return driver.execute_script("""return ['chart-daily-revenue', 'chart-aov', 'chart-new-returning']
                .map(function (id) { return document.getElementById(id)._fullLayout.yaxis.range[1]; });""")

        def highest(rows: dict, *columns: str) -> float:
            return max(sum(rows[column][i] or 0 for column in columns)
                       for i, day in enumerate(rows["order_date"]) if day in days[-2:])

        revenue_top, aov_top, customers_top = tops()
        assert highest(spiked["daily"], "net_revenue_usd") <= revenue_top < spiked["daily"]["net_revenue_usd"][0] / 10
        assert highest(spiked["daily"], "aov_usd") <= aov_top < spiked["daily"]["aov_usd"][0] / 10
        assert (highest(spiked["new_vs_returning"], "new_customers", "returning_customers") <= customers_top
                < spiked["new_vs_returning"]["new_customers"][0] / 10)
        # Bars start at 0, and so do their axes, fitted again and again (new vs returning has no
        # rangemode of its own), and the axis of revenue orders.
        bottoms = ("return [['chart-daily-revenue', 'yaxis'], ['chart-daily-revenue', 'yaxis2'], "
                   "['chart-new-returning', 'yaxis']].map(function (a) { "
                   "return document.getElementById(a[0])._fullLayout[a[1]].range[0]; });")
        assert driver.execute_script(bottoms) == [0, 0, 0]
        pick_country(driver, 1)
        [(label, revenue), _] = driver.execute_script(VISIBLE_TRACES)
        assert max(revenue[-2:]) <= tops()[0] <= max(max(revenue[-2:]) * 1.2, 1), label
        pick_country(driver, 0)
        driver.execute_script("Plotly.relayout('chart-daily-revenue', {'xaxis.autorange': true});")
        time.sleep(0.5)
        assert tops()[0] >= spiked["daily"]["net_revenue_usd"][0]
        problems += severe_console_errors(driver)
    assert not problems, problems
    assert not outside, outside
