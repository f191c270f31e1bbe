"""Open the warehouse of the current target: chDB in-process on `dev`, HTTP(S) otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from ecom.config import Settings
from ecom.lock import ensure_unlocked


def connect(settings: Settings | None = None, wait_seconds: float = 0.0) -> Client:
    """A clickhouse-connect client; close it as soon as the step is done (chDB locks its directory)."""
    settings = settings or Settings.from_env()
    if settings.embedded:
        path = settings.chdb_path.resolve()
        path.mkdir(parents=True, exist_ok=True)
        ensure_unlocked(path, wait_seconds)
        return clickhouse_connect.get_client(interface="chdb", path=str(path))
    return clickhouse_connect.get_client(
        host=settings.host,
        port=settings.port or (8443 if settings.secure else 8123),
        username=settings.user,
        password=settings.password,
        secure=settings.secure,
    )


@contextmanager
def session(settings: Settings | None = None, wait_seconds: float = 0.0) -> Iterator[Client]:
    client = connect(settings, wait_seconds)
    try:
        yield client
    finally:
        client.close()
