"""Credentials and connections for the embedded engine.

dbt-clickhouse's HTTP client wrapper is reused as is; only the clickhouse-connect client it
wraps is built with the chdb interface, on the data directory named by `path`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.exceptions import DatabaseError, ProgrammingError
from dbt.adapters.clickhouse import ClickHouseColumn
from dbt.adapters.clickhouse.connections import ClickHouseConnectionManager
from dbt.adapters.clickhouse.credentials import ClickHouseCredentials
from dbt.adapters.clickhouse.httpclient import ChHttpClient
from dbt.adapters.clickhouse.util import hide_stack_trace
from dbt.adapters.exceptions import FailedToConnectError
from dbt.cli.resolvers import default_project_dir
from dbt.flags import get_flags
from dbt_common.exceptions import DbtDatabaseError

from ecom.config import SettingError, chdb_path_problem, env_number
from ecom.lock import DEFAULT_DBT_LOCK_WAIT, LOCK_WAIT_ENV, WarehouseLocked, WarehouseUnavailable, open_when_free
from ecom.warehouse import describe, described_columns, prepare_directory

# Settings the engine's session does not know: dbt-clickhouse sets them for servers.
_SERVER_ONLY_SETTINGS = ("session_id",)


@dataclass
class ChdbCredentials(ClickHouseCredentials):
    """`type: chdb`: the data directory replaces host, port and user."""

    path: str = "data/warehouse"
    host: str = "chdb"

    def __post_init__(self) -> None:
        super().__post_init__()
        # Resolve once: the working directory can change while the engine starts, and every
        # thread must open the same path. A relative path is the project's, as dbt's own target
        # and log paths are: run from a folder below the project, dbt finds the project above it,
        # and must find its warehouse too, not start an empty one there.
        self.path = os.path.abspath(os.path.join(_project_dir(), self.path))

    @property
    def type(self) -> str:
        return "chdb"

    @property
    def unique_field(self) -> str:
        return os.path.realpath(self.path)

    # dbt keeps a parsed project for the next run while these keys are unchanged: the path is not
    # one of them, so a run on another warehouse (the bench's, a test's) reparses nothing. Models
    # still find it as `target.path` (the target's keys with aliases), at run time; nothing in
    # the project reads it while parsing, where a change would go unseen. `dbt debug`, which
    # parses nothing, lists it with the keys: the warehouse its connection test opened.
    def _connection_keys(self) -> tuple[str, ...]:
        return ("schema", "custom_settings", "use_lw_deletes")

    def connection_info(self, *, with_aliases: bool = False):
        yield from super().connection_info(with_aliases=with_aliases)
        if with_aliases or getattr(get_flags(), "WHICH", None) == "debug":
            yield "path", self.path


def _project_dir() -> str:
    """The project folder of this dbt invocation (--project-dir, DBT_PROJECT_DIR, or the nearest
    folder at or above the working directory with a dbt_project.yml, as dbt looks for it)."""
    project = getattr(get_flags(), "PROJECT_DIR", None)
    return str(project) if project else str(default_project_dir())


def _lock_wait() -> float:
    """Seconds to wait for another process to release the warehouse (ECOM_LOCK_WAIT_SECONDS)."""
    try:
        return env_number(LOCK_WAIT_ENV, DEFAULT_DBT_LOCK_WAIT, 0, math.inf, "a number of seconds, 0 or more")
    except SettingError as exc:
        raise FailedToConnectError(str(exc)) from None


class ChdbClient(ChHttpClient):
    """dbt-clickhouse's client wrapper around a chdb-backed clickhouse-connect client."""

    def _create_client(self, credentials: ChdbCredentials):
        if problem := chdb_path_problem(credentials.path):
            raise FailedToConnectError(problem)
        path = os.path.abspath(credentials.path)
        try:
            prepare_directory(Path(path))
        except WarehouseUnavailable as exc:
            raise FailedToConnectError(str(exc)) from None
        settings = {k: v for k, v in self._conn_settings.items() if k not in _SERVER_ONLY_SETTINGS}
        try:
            return open_when_free(path, _lock_wait(), lambda: clickhouse_connect.get_client(
                interface="chdb", path=path, settings=settings), ProgrammingError)
        except WarehouseLocked as exc:
            raise FailedToConnectError(str(exc)) from None
        except ProgrammingError as exc:
            raise FailedToConnectError(f"cannot open the embedded warehouse at {path}: {exc}") from None

    def query(self, sql, **kwargs):
        """The chdb backend gives a result with no rows no column names either, so `dbt show` of a
        model with no rows printed no header; for `dbt show` they are read back with `DESCRIBE`,
        which types the query without running it (but evaluates its scalar subqueries: not for
        the empty results of a build). A statement without columns keeps its empty result."""
        result = super().query(sql, **kwargs)
        if not result.column_names and not result.result_set and getattr(get_flags(), "WHICH", None) == "show":
            result.column_names = described_columns(self._client, sql)
        return result

    def columns_in_query(self, sql: str, **kwargs) -> list[ClickHouseColumn]:
        """Names and types of a query's columns (contract checks, schema changes), from `DESCRIBE`:
        the engine types the query without running it (scalar subqueries are still evaluated).
        The inherited `SELECT * FROM (query) LIMIT 0` builds every `IN` set first: 3.4 s for
        mart_data_quality on ten years of history, 0.1 s described."""
        try:
            described = describe(self._client, sql, **kwargs)
        except DatabaseError as ex:
            raise DbtDatabaseError(hide_stack_trace(ex)) from ex
        return [ClickHouseColumn.create(name, data_type) for name, data_type in described]

    def close(self) -> None:
        self._client.close()


class ChdbConnectionManager(ClickHouseConnectionManager):
    TYPE = "chdb"

    @classmethod
    def open(cls, connection):
        if connection.state == "open":
            return connection
        credentials = cls.get_credentials(connection.credentials)
        try:
            connection.handle = ChdbClient(credentials)
            connection.state = "open"
        except FailedToConnectError:
            connection.handle = None
            connection.state = "fail"
            raise
        return connection
