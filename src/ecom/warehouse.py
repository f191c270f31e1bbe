"""Open the warehouse of the current target: chDB in-process on `dev`, HTTP(S) otherwise."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, ProgrammingError
from urllib3.util import Timeout

from ecom.config import Settings
from ecom.lock import WarehouseUnavailable, cannot_create_warehouse, open_when_free, os_reason

# A server that takes the connection but does not answer: the first exchange gives up after
# HANDSHAKE_SECONDS, not after the read timeout of a query (clickhouse-connect's 300 s).
HANDSHAKE_SECONDS = 30
QUERY_SECONDS = 300
# On a cluster bronze is read through Distributed tables, and a query that filters one by a
# subquery of another (the loader's rejected files, silver's landed batches) is refused on
# several shards under the engine's default `deny`; `global` sends the subquery's result to
# every shard. The cluster target of profiles.yml sets the same for dbt.
CLUSTER_SETTINGS = {"distributed_product_mode": "global"}


def connect(settings: Settings | None = None, wait_seconds: float = 0.0) -> Client:
    """A clickhouse-connect client; close it as soon as the step is done (chDB locks its directory)."""
    settings = settings or Settings.from_env()
    if settings.embedded:
        path = settings.chdb_path.resolve()
        prepare_directory(path)
        try:
            return open_when_free(path, wait_seconds, lambda: clickhouse_connect.get_client(
                interface="chdb", path=str(path)), ProgrammingError)
        except ProgrammingError as exc:
            raise WarehouseUnavailable(
                f"cannot open the embedded warehouse at {path}: {_reason(exc)}; check that its disk has "
                "free space and that its files belong to this user"
            ) from None
    try:
        client = clickhouse_connect.get_client(
            host=settings.host,
            port=settings.port or (8443 if settings.secure else 8123),
            username=settings.user,
            password=settings.password,
            secure=settings.secure,
            send_receive_timeout=HANDSHAKE_SECONDS,
            settings=CLUSTER_SETTINGS if settings.cluster else None,
        )
    except (OperationalError, DatabaseError) as exc:
        raise WarehouseUnavailable(
            f"cannot open {settings.describe()} (target {settings.target}): {_reason(exc)}; check "
            "CLICKHOUSE_HOST, CLICKHOUSE_PORT, CLICKHOUSE_SECURE, CLICKHOUSE_USER and CLICKHOUSE_PASSWORD"
        ) from None
    client.timeout = Timeout(connect=client.timeout.connect_timeout, read=QUERY_SECONDS)
    return client


def prepare_directory(path: Path) -> None:
    """Create the embedded warehouse's directory if need be; WarehouseUnavailable says why it
    cannot be used, in one line (ecom and the dbt plugin alike)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_create_warehouse(path, os_reason(exc)) from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise WarehouseUnavailable(
            f"warehouse directory {path} is not writable by this user (permission denied); fix its "
            "permissions or point ECOM_CHDB_PATH at another directory"
        )


def describe(client: Client, sql: str, **kwargs) -> list[tuple[str, str]]:
    """(name, type) of each column of a query, typed by the engine without running it (`DESCRIBE`;
    scalar subqueries are still evaluated)."""
    return [(row[0], row[1]) for row in client.query(f"DESCRIBE TABLE ( \n{sql} \n)", **kwargs).result_rows]


def described_columns(client: Client, sql: str) -> tuple[str, ...]:
    """The column names of a query, or () for a statement without columns: the chdb backend
    returns an empty result without its column names."""
    try:
        return tuple(name for name, _ in describe(client, sql))
    except DatabaseError:
        return ()


def _reason(exc: Exception) -> str:
    """The gist of a connection failure, without the HTTP library's retry story."""
    text = " ".join(str(exc).split())
    if errno := re.search(r"\[Errno -?\d+\] ([^\"')(]+)", text):
        return errno.group(1).strip().rstrip(".")
    if code := re.search(r"DB::Exception: (.+?)(?: \(version |\. Stack trace|$)", text):
        return code.group(1)[:200]
    if timeout := re.search(r"Read timed out\. \(read timeout=([\d.]+)\)", text):
        return f"no answer within {float(timeout.group(1)):g} s"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:  # OpenSSL before 3.2, and since
        return "TLS handshake failed (the port does not speak TLS)"
    if ssl := re.search(r"\[SSL: (\w+)\]", text):
        return f"TLS handshake failed: {ssl.group(1)}"
    return text[:200]


@contextmanager
def session(settings: Settings | None = None, wait_seconds: float = 0.0) -> Iterator[Client]:
    client = connect(settings, wait_seconds)
    try:
        yield client
    finally:
        client.close()
