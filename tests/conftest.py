"""Shared fixtures: isolated raw and warehouse directories, and one small built world.

Everything runs on the real embedded engine, real dbt and real files in temporary
directories; nothing touches data/ of the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Where the browser tests save what they saw: a temporary folder, so a test run leaves the
# checkout as it was; `make screenshots` points it at docs/img, the README's images.
SCREENSHOTS = Path(os.environ.get("ECOM_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "ecom-screenshots")


# The order in which the two workers take the test files (`--dist loadfile`, with xdist's own
# ordering by number of tests turned off): the longest files first, so that neither worker is
# left with a long file at the end while the other waits. On 2 cores each of these takes one to
# five minutes; the files not listed take well under one and run after them.
LONGEST_FIRST = ("test_reliability.py", "test_pipeline.py", "test_orchestration.py", "test_bench.py",
                 "test_dagster_ui.py", "test_docs_site.py", "test_report.py", "test_plugin.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order


@dataclass(frozen=True)
class World:
    """A generated, loaded and built warehouse shared by the tests of a session."""

    raw_dir: Path
    chdb_path: Path
    env: dict[str, str]
    start: date
    days: int


def ecom_env(raw_dir: Path, chdb_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "ECOM_", "DBT_"))}
    # dbt's target and log folders beside the warehouse, never the checkout's: test files run in
    # parallel, and two dbt processes must not write one manifest.
    env.update(ECOM_RAW_DIR=str(raw_dir), ECOM_CHDB_PATH=str(chdb_path), DBT_TARGET="dev",
               ECOM_PROJECT_DIR=str(ROOT), DBT_TARGET_PATH=str(chdb_path.parent / "dbt-target"),
               DBT_LOG_PATH=str(chdb_path.parent / "dbt-logs"))
    env.update(extra)
    return env


def run_ecom(*args: str, env: dict[str, str], check: bool = True, timeout: float = 900,
             cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the installed `ecom` console script as a user would."""
    result = subprocess.run([str(BIN / "ecom"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode not in (0, 3):
        raise AssertionError(f"ecom {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def warehouse(tmp_path, monkeypatch) -> Path:
    """An empty embedded warehouse directory, set as ECOM_CHDB_PATH for this test."""
    path = tmp_path / "warehouse"
    monkeypatch.setenv("ECOM_CHDB_PATH", str(path))
    monkeypatch.setenv("DBT_TARGET", "dev")
    return path


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    """14 days of a world at the default dirty rate 0.02, landed and built raw to gold with `ecom run`."""
    base = tmp_path_factory.mktemp("world")
    raw_dir, chdb_path = base / "raw", base / "warehouse"
    env = ecom_env(raw_dir, chdb_path, DBT_TARGET_PATH=str(base / "target"), DBT_LOG_PATH=str(base / "logs"))
    del env["DBT_TARGET"]  # the default target, as most shells have it
    start, days = date(2026, 2, 22), 14
    run_ecom("generate", "--start", start.isoformat(), "--days", str(days), "--orders-per-day", "150",
             "--dirty-rate", "0.02", "--quiet", env=env)
    run_ecom("run", "--quiet", env=env)
    return World(raw_dir, chdb_path, env, start, days)
