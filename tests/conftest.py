"""Shared fixtures: isolated raw and warehouse directories, and one small built world.

Everything runs on the real embedded engine, real dbt and real files in temporary
directories; nothing touches data/ of the checkout.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

import dbt_fork

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Where the browser tests save what they saw: a temporary folder, so a test run leaves the
# checkout as it was; `make screenshots` points it at docs/img, the README's images.
SCREENSHOTS = Path(os.environ.get("ECOM_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "ecom-screenshots")


# The order in which the two workers take the test files (`--dist loadfile`, with xdist's own
# ordering by number of tests turned off): the longest files first, so that neither worker is
# left with a long file at the end while the other waits. On 2 cores each of these takes half a
# minute to nine (wall time: the lock and Dagster UI tests mostly wait); the files not listed take
# well under one and run after them.
LONGEST_FIRST = ("test_pipeline.py", "test_orchestration.py", "test_reliability.py", "test_plugin.py",
                 "test_dagster_ui.py", "test_bench.py", "test_lock.py", "test_cli.py", "test_lint.py",
                 "test_report.py", "test_docs_site.py")


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


def _environment_without_settings() -> dict[str, str]:
    """This process's environment without the project's, dbt's or the server's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "ECOM_", "DBT_"))}


# A folder of the whole test run, shared by both workers: dbt's parse of the project
# (parsed_project) and the built world are made there once.
_shared_dir: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _shared_run_dir(tmp_path_factory) -> None:
    global _shared_dir
    base = tmp_path_factory.getbasetemp()
    _shared_dir = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def parsed_project() -> Path | None:
    """dbt's saved parse of the project (partial_parse.msgpack), made once for the test run.

    Each test has a target folder of its own, where dbt finds no saved parse and parses the
    whole project again: about ten seconds of CPU on 2 cores, before most tests' first dbt
    command. dbt reads this one instead (DBT_PARTIAL_PARSE_FILE_PATH) and parses only what
    differs from it: a test with another project, other vars or another target parses in full.
    """
    if _shared_dir is None:
        return None
    folder = _shared_dir / "parsed-project"
    folder.mkdir(exist_ok=True)
    saved = folder / "target" / "partial_parse.msgpack"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits for the one parse
        if not saved.exists() and not (folder / "failed.log").exists():
            env = _environment_without_settings()
            env.update(ECOM_CHDB_PATH=str(folder / "warehouse"), DBT_TARGET="dev",
                       DBT_TARGET_PATH=str(folder / "target"), DBT_LOG_PATH=str(folder / "logs"))
            result = dbt("parse", env=env, timeout=600)
            if result.returncode:  # every test parses for itself, and says why it fails
                (folder / "failed.log").write_text(result.stdout + result.stderr)
    return saved if saved.exists() else None


def parsed_project_env() -> dict[str, str]:
    """The variable pointing dbt at parsed_project(); none if that parse failed."""
    saved = parsed_project()
    return {"DBT_PARTIAL_PARSE_FILE_PATH": str(saved)} if saved else {}


def ecom_env(raw_dir: Path, chdb_path: Path, **extra: str) -> dict[str, str]:
    env = _environment_without_settings()
    # dbt's target and log folders beside the warehouse, never the checkout's: test files run in
    # parallel, and two dbt processes must not write one manifest.
    env.update(ECOM_RAW_DIR=str(raw_dir), ECOM_CHDB_PATH=str(chdb_path), DBT_TARGET="dev",
               ECOM_PROJECT_DIR=str(ROOT), DBT_TARGET_PATH=str(chdb_path.parent / "dbt-target"),
               DBT_LOG_PATH=str(chdb_path.parent / "dbt-logs"))
    env.update(parsed_project_env(), **extra)
    return env


def run_ecom(*args: str, env: dict[str, str], check: bool = True, timeout: float = 900,
             cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the installed `ecom` console script as a user would."""
    result = subprocess.run([str(BIN / "ecom"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode not in (0, 3):
        raise AssertionError(f"ecom {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def dbt(*args: str, env: dict[str, str], project: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the installed dbt CLI on a project (the checkout's), as a user would from its folder (dbt_fork)."""
    return dbt_fork.run([*args, "--project-dir", str(project), "--profiles-dir", str(project)], env=env, cwd=project,
                        timeout=timeout)


@pytest.fixture
def warehouse(tmp_path, monkeypatch) -> Path:
    """An empty embedded warehouse directory, set as ECOM_CHDB_PATH for this test."""
    path = tmp_path / "warehouse"
    monkeypatch.setenv("ECOM_CHDB_PATH", str(path))
    monkeypatch.setenv("DBT_TARGET", "dev")
    return path


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    """14 days of a world at the default dirty rate 0.02, landed and built raw to gold with `ecom run`.

    Built once for the test run, by the first worker to ask; each worker reads a copy of the
    warehouse and of dbt's target folder (tests write into both), and the same raw files.
    """
    start, days = date(2026, 2, 22), 14
    built = _shared_dir / "world"
    with open(_shared_dir / "world.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / "built").exists():
            shutil.rmtree(built, ignore_errors=True)  # what a failed build left
            env = ecom_env(built / "raw", built / "warehouse", DBT_TARGET_PATH=str(built / "target"),
                           DBT_LOG_PATH=str(built / "logs"))
            del env["DBT_TARGET"]  # the default target, as most shells have it
            # dbt reads DBT_TARGET as its --target too: the run's parse is not the shared one
            env.pop("DBT_PARTIAL_PARSE_FILE_PATH", None)
            run_ecom("generate", "--start", start.isoformat(), "--days", str(days), "--orders-per-day", "150",
                     "--dirty-rate", "0.02", "--quiet", env=env)
            run_ecom("run", "--quiet", env=env)
            (built / "built").touch()
    base = tmp_path_factory.mktemp("world")
    for folder in ("warehouse", "target"):  # nothing opens the built ones again: a plain copy
        shutil.copytree(built / folder, base / folder, symlinks=True)
    env = ecom_env(built / "raw", base / "warehouse", DBT_TARGET_PATH=str(base / "target"),
                   DBT_LOG_PATH=str(base / "logs"))
    del env["DBT_TARGET"]
    env.pop("DBT_PARTIAL_PARSE_FILE_PATH", None)  # the copied target has the run's parse
    return World(built / "raw", base / "warehouse", env, start, days)
