"""The Dagster UI in headless Chromium: the asset graph, and one partition materialized from it.

`dagster dev` (webserver and daemon) starts on a free local port with a temporary Dagster home
(the project's dagster.yaml), a temporary warehouse and a small generated world of one day,
yesterday, so that day is the only partition. The browser opens the global asset lineage,
finds the layer groups, launches a materialization of the day from the "Materialize all"
dialog and waits for the run to succeed; the graph, now materialized, is saved as
dagster-asset-graph.png (in docs/img, for the README, with `make screenshots`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import BIN, ROOT, SCREENSHOTS, parsed_project_env
from ecom.generate import generate

pytestmark = pytest.mark.browser

CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = SCREENSHOTS / "dagster-asset-graph.png"
DAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
STARTUP_SECONDS = 240
RUN_SECONDS = 420

RUNS_QUERY = """
query { runsOrError(limit: 20) { __typename ... on Runs { results { runId status tags { key value } } } } }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the whole process group of `dagster dev`, then SIGKILL whatever is left."""
    try:
        group = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(1)  # children of the group exit after their parent
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory) -> Iterator[str]:
    if not (shutil.which("chromium") and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (make browser)")
    base = tmp_path_factory.mktemp("dagster-ui")
    home = base / "dagster"
    home.mkdir()
    shutil.copy2(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    generate(base / "raw", start=datetime.fromisoformat(DAY).date(), days=1, orders_per_day=50, progress=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "ECOM_", "DBT_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home), ECOM_RAW_DIR=str(base / "raw"), ECOM_CHDB_PATH=str(base / "warehouse"),
        DBT_TARGET="dev", DBT_TARGET_PATH=str(base / "target"), DBT_LOG_PATH=str(base / "logs"),
        ECOM_PROJECT_DIR=str(ROOT), ECOM_START_DATE=DAY, ECOM_REPORT_PATH=str(base / "report.html"),
        ECOM_AUTOMATION="off",  # no sensor or schedule run competes with the one launched here
    )
    env.update(parsed_project_env())
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(base / "dagster-dev.log", "w")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-m", "orchestration.definitions"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, (base / "dagster-dev.log").read_text()[-3000:]
            try:
                answer = graphql(url, "query { workspaceOrError { __typename ... on Workspace { "
                                      "locationEntries { locationOrLoadError { __typename } } } } }")
                entries = answer["data"]["workspaceOrError"]["locationEntries"]
                if entries and all(e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"]
                                   == "RepositoryLocation" for e in entries):
                    break
            except (OSError, KeyError, TypeError, ValueError):
                pass
            assert time.monotonic() < deadline, "dagster dev did not come up:\n" + \
                (base / "dagster-dev.log").read_text()[-3000:]
            time.sleep(2)
        yield url
    finally:
        _stop(process)
        log.close()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--window-size=1600,1000",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _runs(url: str) -> list[dict]:
    return graphql(url, RUNS_QUERY)["data"]["runsOrError"]["results"]


def test_materialize_one_partition_from_the_asset_graph(dagster_dev, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url = dagster_dev
    wait = WebDriverWait(browser, 120)
    browser.get(f"{url}/asset-groups")
    wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'Global asset lineage')]")))
    # the layer groups are nodes of the graph
    for group in ("bronze", "silver", "gold"):
        wait.until(ec.presence_of_element_located((By.XPATH, f"//*[normalize-space(text())='{group}']")))
    assert _runs(url) == []

    materialize = wait.until(ec.element_to_be_clickable(
        (By.XPATH, "//button[contains(normalize-space(.), 'Materialize all')]")))
    materialize.click()
    dialog = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")))
    wait.until(lambda _: "Partition selection" in dialog.text)
    # The dialog's title can show before its partition field is rendered: wait for the field.
    partitions = wait.until(lambda _: next(iter(dialog.find_elements(By.CSS_SELECTOR, "input[type=text]")), None))
    partitions.click()
    partitions.send_keys(Keys.CONTROL, "a")
    partitions.send_keys(DAY)
    partitions.send_keys(Keys.TAB)
    wait.until(lambda _: "1 partition" in dialog.text)
    launch = wait.until(lambda _: next((b for b in dialog.find_elements(By.TAG_NAME, "button")
                                        if b.text.strip().startswith("Launch") and b.is_enabled()), None))
    launch.click()

    deadline = time.monotonic() + RUN_SECONDS
    runs: list[dict] = []
    while time.monotonic() < deadline:
        runs = _runs(url)
        if runs and all(run["status"] in ("SUCCESS", "FAILURE", "CANCELED") for run in runs):
            break
        time.sleep(3)
    assert runs, "no run was launched from the dialog"
    assert [run["status"] for run in runs] == ["SUCCESS"] * len(runs), runs
    tags = {tag["key"]: tag["value"] for run in runs for tag in run["tags"]}
    assert DAY in (tags.get("dagster/partition"), tags.get("dagster/asset_partition_range_start"))

    # the run page agrees, then the graph, now materialized, goes to the README
    browser.get(f"{url}/runs/{runs[0]['runId']}")
    wait.until(ec.presence_of_element_located((By.XPATH, "//*[normalize-space(text())='Success']")))
    browser.get(f"{url}/asset-groups")
    for group in ("raw", "bronze", "silver", "gold", "reporting"):
        wait.until(ec.presence_of_element_located((By.XPATH, f"//*[normalize-space(text())='{group}']")))
    _frame_graph(browser)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))


def _frame_graph(driver) -> None:
    """Best effort, for the picture only: room for the graph, nodes large enough to show status.

    Hides the navigation and the group list, zooms in two steps and drags the layer groups to the
    middle. The UI may change its markup; then the picture is taken as the page stands.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    def node(name: str) -> dict:  # the graph's node comes after the sidebar's entry in the page
        return driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{name}']")[-1].rect

    try:
        driver.set_window_size(1600, 800)
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Hide navigation']").click()
        driver.refresh()
        time.sleep(8)
        for _ in range(2):
            driver.find_element(By.CSS_SELECTOR, "[aria-label=zoom_in]").click()
            time.sleep(0.7)
        driver.find_element(By.CSS_SELECTOR, "[aria-label=panel_show_right]").click()
        time.sleep(2)
        left, right = node("raw"), node("reporting")
        middle = (left["x"] - 15 + right["x"] + right["width"] + 40) / 2
        shift = int((70 + 1600 - 80) / 2 - middle)
        ActionChains(driver).move_by_offset(300, 600).click_and_hold().move_by_offset(shift // 2, 0) \
            .move_by_offset(shift - shift // 2, 0).release().perform()
        time.sleep(4)  # status colours arrive with the live data
    except (WebDriverException, IndexError):
        pass


def test_asset_pages_show_the_dbt_docs(dagster_dev, browser):
    """A seed's page ends in its dbt description, not an empty "Raw SQL" block (a model's keeps
    its SQL), and a dbt test's check says what it checks."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)

    def page(path: str, shown: str) -> str:
        browser.get(f"{dagster_dev}/assets/{path}")
        wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(text(), '{shown}')]")))
        return browser.find_element(By.TAG_NAME, "body").text

    assert "Raw SQL" not in page("reference/fx_rates_monthly", "Monthly exchange rates to USD")
    assert "Raw SQL" in page("silver/customers", "latest valid version")
    page("silver/orders?view=checks", "unique_orders_order_id")
    browser.find_element(By.XPATH, "//*[normalize-space(text())='unique_orders_order_id']").click()
    wait.until(lambda _: "order_id is unique." in browser.find_element(By.TAG_NAME, "body").text)
