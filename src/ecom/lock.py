"""The embedded engine's data-directory lock, told in one plain line.

chDB, like a ClickHouse server, holds an exclusive `flock` on `<path>/status` while a process
has the warehouse open, and writes that process's PID into the file. Probing the lock before
opening turns the engine's stack trace into a sentence that names the path, the holder and
what to do.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

# One line when a wait for the warehouse starts, so a step or command that waits is seen to wait:
# `ecom` prints it on stderr, Dagster shows it in the run's log (`python_logs` in dagster.yaml).
log = logging.getLogger("ecom.lock")


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be opened now; the message says why and what to do, in one line."""


class WarehouseLocked(WarehouseUnavailable):
    """Another process has the embedded warehouse open."""


def _holder_pid(status: Path) -> int | None:
    try:
        match = re.search(r"PID:\s*(\d+)", status.read_text(errors="replace"))
    except OSError:
        return None
    return int(match.group(1)) if match else None


def lock_holder(path: str | os.PathLike) -> int | None:
    """PID of another process holding the warehouse at `path`, or None when it is free."""
    status = Path(path) / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:  # no warehouse yet, or one that cannot be read: opening it says why
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder_pid(status)
        return None if pid == os.getpid() else (pid or -1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe_holder(pid: int) -> str:
    if pid < 0:
        return "another process"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        cmd = ""
    cmd = " ".join(cmd.replace("\0", " ").split())  # one line, even for `python -c` with newlines
    return f"process {pid}" + (f" ({cmd[:80]})" if cmd else "")


def ensure_unlocked(path: str | os.PathLike, wait_seconds: float = 0.0) -> None:
    """Return when no other process holds the warehouse; raise WarehouseLocked otherwise.

    With `wait_seconds` > 0, poll until the lock is released or the time is up.
    """
    deadline = time.monotonic() + wait_seconds
    told = False
    while True:
        pid = lock_holder(path)
        if pid is None:
            return
        if time.monotonic() >= deadline:
            raise WarehouseLocked(
                f"warehouse {os.path.abspath(path)} is in use by {describe_holder(pid)}; "
                "wait for it to finish or stop it (chDB allows one process at a time), "
                "or point ECOM_CHDB_PATH at another directory"
            )
        if not told:
            log.warning("warehouse %s is in use by %s; waiting up to %.0f s for it",
                        os.path.abspath(path), describe_holder(pid), deadline - time.monotonic())
            told = True
        time.sleep(0.2)


T = TypeVar("T")

# How long dbt on the embedded target waits for another process to let go of the warehouse
# (a sensor tick, an `ecom sql`): the Dagster steps set it to their resource's wait for the
# dbt process they start.
LOCK_WAIT_ENV = "ECOM_LOCK_WAIT_SECONDS"
DEFAULT_DBT_LOCK_WAIT = 10.0


def open_when_free(path: str | os.PathLike, wait_seconds: float, open_engine: Callable[[], T],
                   refused: type[Exception] | tuple[type[Exception], ...]) -> T:
    """`open_engine()` once no other process holds the warehouse, waiting up to `wait_seconds`.

    Another process can take the lock between the probe and the open: the engine then refuses
    (`refused`), and while time is left the wait goes on. Raises WarehouseLocked when the time is
    up with the warehouse still held, and the engine's own error when it refused for another
    reason.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        ensure_unlocked(path, max(0.0, deadline - time.monotonic()))
        with _engine_stderr() as lock_refusal:
            try:
                return open_engine()
            except refused:
                if lock_holder(path) is None:
                    raise
                lock_refusal.drop = True  # its line said what the message below says
                if time.monotonic() >= deadline:
                    ensure_unlocked(path)  # raises the one-line message naming the holder
                    raise


# What the engine prints on stderr, itself, when another process took the lock between the probe
# and the open (the exception it raises says only "Error initializing EmbeddedServer").
_LOCK_REFUSAL = "Cannot lock file"


class _Refusal:
    drop = False


# File descriptor 2 is the process's: one thread at a time redirects it (dbt opens a connection
# in each of its threads), or one would put back another's redirection for good.
_REDIRECTING = threading.Lock()


@contextmanager
def _engine_stderr() -> Iterator[_Refusal]:
    """Hold back what is written to file descriptor 2 meanwhile and write it to stderr at the end,
    but for the engine's refusal of a held lock when the block set `drop`: the engine prints it
    from C++, where Python cannot catch it, before the one-line message names the holder."""
    refusal = _Refusal()
    with _REDIRECTING:
        try:
            saved = os.dup(2)
        except OSError:  # started with stderr closed (`2>&-`): nothing is printed to hold back
            yield refusal
            return
        try:
            with tempfile.TemporaryFile() as held:
                if sys.stderr is not None:
                    sys.stderr.flush()
                os.dup2(held.fileno(), 2)
                try:
                    yield refusal
                finally:
                    os.dup2(saved, 2)
                    held.seek(0)
                    printed = held.read().decode(errors="replace").splitlines(keepends=True)
                    if refusal.drop:
                        printed = [line for line in printed if _LOCK_REFUSAL not in line]
                    if printed and sys.stderr is not None:
                        sys.stderr.write("".join(printed))
                        sys.stderr.flush()
        finally:
            os.close(saved)


IN_THE_WAY = "a file, not a directory, is in the way"


def os_reason(exc: OSError) -> str:
    """Why a path could not be made or opened, in a few words."""
    return IN_THE_WAY if isinstance(exc, FileExistsError | NotADirectoryError) else exc.strerror or str(exc)


def cannot_create_warehouse(path: Path, why: str) -> WarehouseUnavailable:
    return WarehouseUnavailable(f"cannot create the warehouse directory {path} ({why}); point ECOM_CHDB_PATH "
                                "at a directory this user can write")


@contextmanager
def pipeline_lock(path: str | os.PathLike, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold `<path>.pipeline.lock` for a whole multi-step run (load, then dbt in a subprocess); the
    path is resolved first, so a warehouse reached through a symbolic link has the same lock.

    The engine's own lock is released between steps, so without this a second `ecom run` could
    slip in between the load and the build of the first. The second run waits up to
    `wait_seconds`, then raises WarehouseLocked with the one-line message.
    """
    real = Path(path).resolve()  # one lock per warehouse, however its path is spelt (symbolic links)
    lock_path = real.with_name(real.name + ".pipeline.lock")
    try:
        in_the_way = real.exists() and not real.is_dir()
    except OSError:  # a folder on the way that cannot be looked into: the open below says so
        in_the_way = False
    if in_the_way:  # refused before a lock is left beside it
        raise cannot_create_warehouse(real, IN_THE_WAY)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise WarehouseUnavailable(
            f"cannot create the pipeline lock {lock_path} ({os_reason(exc)}); point ECOM_CHDB_PATH at a "
            "directory this user can write"
        ) from None
    deadline = time.monotonic() + wait_seconds
    told = False
    with handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                if time.monotonic() >= deadline:
                    raise WarehouseLocked(
                        f"warehouse {real} is being built by {holder}; wait for it to finish (ecom commands "
                        "take --wait SECONDS; in Dagster, the warehouse resource's wait_seconds), or point "
                        "ECOM_CHDB_PATH at another directory"
                    ) from None
                if not told:
                    log.warning("warehouse %s is being built by %s; waiting up to %.0f s for it", real, holder,
                                deadline - time.monotonic())
                    told = True
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
