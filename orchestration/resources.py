"""Resources: the warehouse of the current target and the dbt project, both from one place.

`ecom.config.Settings.from_env()` decides the target (DBT_TARGET), the raw directory and the
embedded warehouse's path for the CLI, for dbt (profiles.yml reads the same variables) and
here. Nothing in this module holds a secret: credentials stay in the environment.

On `dev` the warehouse is chDB, which allows one process per data directory. Every step that
opens it closes it before the next one starts and holds the CLI's pipeline lock meanwhile;
steps that touch it share the concurrency pool WAREHOUSE_POOL (limit 1 in the instance's
dagster.yaml), so no step holds the directory while dbt runs in its subprocess, even across
runs. On `server` and `cluster` the steps share the pool too, though there is no lock: a load
removes the bronze rows of batches its ingest log does not list (those of a load that stopped,
or of one still landing), and an incremental model deletes what lies above its last finished
run (another build's rows, mid-way), so two loads or two builds on one warehouse must not
overlap.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import cached_property
from importlib.metadata import version
from pathlib import Path

import dagster as dg
from clickhouse_connect.driver.client import Client
from dagster_dbt import DbtCliResource, DbtProject
from packaging.version import Version

from ecom.config import SettingError, Settings, dbt_executable, dbt_folder_problem, named_target, project_dir
from ecom.lock import LOCK_WAIT_ENV, WarehouseUnavailable, pipeline_lock
from ecom.warehouse import session

WAREHOUSE_POOL = "warehouse"

# Seconds a step waits for another process (a sensor tick, a CLI user) to release the
# embedded warehouse before it gives up with a plain message.
LOCK_WAIT_SECONDS = 120.0

# Folders whose files make up the dbt project (a change there means the manifest is stale).
DBT_SOURCE_FOLDERS = ("models", "macros", "seeds", "data_tests", "snapshots", "analyses")


def settings() -> Settings:
    return Settings.from_env()


class Warehouse(dg.ConfigurableResource):
    """The warehouse of the current target (DBT_TARGET), held by one step at a time.

    On the embedded target a step holds the pipeline lock of `ecom run` and `ecom load`
    (`<ECOM_CHDB_PATH>.pipeline.lock`) while it works, so neither the CLI nor a sensor opens the
    directory between its queries, or while dbt runs; it waits up to `wait_seconds` for it.
    """

    wait_seconds: float = LOCK_WAIT_SECONDS

    @property
    def settings(self) -> Settings:
        return settings()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the pipeline lock for a whole step (embedded target only)."""
        current = self.settings
        if not current.embedded:
            yield
            return
        with ExitStack() as held:
            with unavailable_as_failure():
                held.enter_context(pipeline_lock(current.chdb_path, self.wait_seconds))
            yield

    @contextmanager
    def client(self) -> Iterator[Client]:
        """A client closed on exit, inside `exclusive()`; waits for the engine's directory lock."""
        with ExitStack() as held:
            with unavailable_as_failure():
                client = held.enter_context(session(self.settings, wait_seconds=self.wait_seconds))
            yield client

    @contextmanager
    def session(self) -> Iterator[Client]:
        """`exclusive()` and a client, for a step that only queries."""
        with self.exclusive(), self.client() as client:
            yield client


@contextmanager
def unavailable_as_failure() -> Iterator[None]:
    """A warehouse that cannot be opened (held by another process, a path that cannot be used)
    fails the step with its one-line reason as the failure's description, instead of the error
    under a framework traceback."""
    try:
        yield
    except WarehouseUnavailable as exc:
        raise dg.Failure(description=str(exc)) from None


@contextmanager
def pinned_warehouse_env(current: Settings, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Let a dbt subprocess open exactly the warehouse this process sees, waiting as this step does.

    Both read a relative ECOM_CHDB_PATH below the project, but dbt's project is the one it is
    given (a copy in tests); pin the absolute path (as `ecom run` does) while the subprocess
    starts, and the step's wait for the lock (a sensor tick may open the warehouse as dbt starts).
    """
    if not current.embedded:
        yield
        return
    pinned = {"ECOM_CHDB_PATH": str(current.chdb_path.resolve()), LOCK_WAIT_ENV: str(wait_seconds)}
    saved = {name: os.environ.get(name) for name in pinned}
    os.environ.update(pinned)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class DbtCli(DbtCliResource):
    """dagster-dbt's dbt CLI resource, without two costs of each dbt step that buy nothing here.

    dagster-dbt asks the executable for its version (`dbt --version`: a dbt start, about 4 CPU s)
    once per resource, and Dagster builds the resource for every run: the dbt beside this
    interpreter is this environment's dbt-core, whose version its package metadata holds. And it
    sets up a dbt adapter in the step's own process (1.5-3 CPU s per step) for row counts and
    column metadata; on the embedded target the step counts rows with its own client, after dbt
    let go of the warehouse, and never asks it for either.
    """

    @cached_property
    def _cli_version(self) -> Version:
        if Path(self.dbt_executable) == Path(sys.executable).with_name("dbt"):
            return Version(version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args: Sequence[str]):
        return None if settings().embedded else super()._initialize_dbt_core_adapter(args)


def _newest_source(root: Path) -> float:
    newest = 0.0
    for name in ("dbt_project.yml", "profiles.yml"):
        if (root / name).exists():
            newest = max(newest, (root / name).stat().st_mtime)
    for folder in DBT_SOURCE_FOLDERS:
        for path in (root / folder).rglob("*") if (root / folder).is_dir() else ():
            newest = max(newest, path.stat().st_mtime)
    return newest


def dbt_project(root: Path | None = None) -> DbtProject:
    """The dbt project at the repository root, with an up-to-date manifest to read.

    The manifest lives in DBT_TARGET_PATH (default `target/`). It is parsed when it is missing
    (a fresh clone has no `target/`) or older than a file of the project (an edited model), one
    process at a time.
    """
    root = Path(root) if root else project_dir()
    if problem := dbt_folder_problem(root):
        raise SettingError(problem)
    target_path = Path(os.environ.get("DBT_TARGET_PATH") or "target")
    project = DbtProject(project_dir=root, target_path=target_path, profiles_dir=root)
    manifest = project.manifest_path
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source(root):
        return project
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest.parent / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be parsing the same project
        if not manifest.exists() or manifest.stat().st_mtime < _newest_source(root):
            DbtCli(project_dir=project, dbt_executable=dbt_executable()).cli(
                ["parse", "--quiet"], target_path=project.target_path
            ).wait()
    return project


def dbt_resource(project: DbtProject, current: Settings | None = None) -> DbtCli:
    """dbt on the current target. `--target` only when the profile would name another from
    DBT_TARGET (as `ecom run` does): dbt keeps it in its partial-parse state, so every Dagster
    run after a plain `dbt build` (and the next `dbt build` after it) parsed the project anew."""
    target = (current or settings()).target
    return DbtCli(project_dir=project, target=None if named_target() == target else target,
                  dbt_executable=dbt_executable())
