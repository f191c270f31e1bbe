"""One place that decides where things are and which warehouse target is used.

Every setting comes from the environment (SPEC section 2), so the CLI, dbt (through
profiles.yml) and Dagster agree without passing anything around.
"""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

TARGETS = ("dev", "server", "cluster")
DEMO_START = date(2026, 9, 1)  # the first day `ecom generate` writes and Dagster partitions, unless told
REPORT_PATH_ENV = "ECOM_REPORT_PATH"
DEFAULT_REPORT_PATH = "data/report/index.html"


class SettingError(ValueError):
    """A setting of the environment with a value it cannot have; the message names it."""


def _reason(exc: OSError | RuntimeError) -> str:
    """What went wrong with a path: the system's words, or pathlib's for a loop of links."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _look_at(path: Path) -> None:
    """Raise what keeps `path` from being looked at: a loop of symbolic links (RuntimeError on
    Python 3.11, OSError later), a name too long, a folder on the way that cannot be searched.
    A path that is missing, or below a file, raises nothing: the callers say so in their words."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        path.resolve(strict=True)


def usable_path(name: str, path: str | Path, given: str | None = None) -> Path:
    """`path`, the value of the setting `name` (as the user `given` it), resolved; a SettingError
    naming the setting when the path cannot be looked at, where pathlib would raise from deep
    inside a command."""
    try:
        _look_at(Path(path))
    except (OSError, RuntimeError) as exc:
        raise SettingError(f"{name}={given or path} cannot be used ({_reason(exc)}): set {name} to another "
                           "path") from None
    return Path(path).resolve()


def _project_around_cwd() -> Path | None:
    """ECOM_PROJECT_DIR, else the nearest folder at or above the cwd with a dbt_project.yml."""
    if env := os.environ.get("ECOM_PROJECT_DIR"):
        root = usable_path("ECOM_PROJECT_DIR", env)
        if not (root / "dbt_project.yml").is_file():
            raise SettingError(f"ECOM_PROJECT_DIR={env} has no dbt_project.yml: set it to the project's root "
                               "(the folder with dbt_project.yml), or unset it to use the checkout")
        return root
    for candidate in (Path.cwd(), *Path.cwd().parents):
        if (candidate / "dbt_project.yml").is_file():
            return candidate
    return None


def data_path(path: str | Path) -> Path:
    """A data path from the environment or a default (`data/raw`, `data/warehouse`, ...): absolute
    as it is; relative, below the project the command runs in, so every folder of the checkout
    reaches the same data, as dbt reads the profile's relative path from the project root;
    outside a project, below the working directory. Given relative to the working directory, as a
    user would type it: `data/raw` at the root, `../data/raw` one folder down."""
    path = Path(path)
    root = None if path.is_absolute() else _project_around_cwd()
    return Path(os.path.relpath(root / path)) if root else path


def project_dir() -> Path:
    """The dbt project root: ECOM_PROJECT_DIR, else the nearest dbt_project.yml above the cwd."""
    if root := _project_around_cwd():
        return root
    source_checkout = Path(__file__).resolve().parents[2]
    if (source_checkout / "dbt_project.yml").is_file():
        return source_checkout
    raise SettingError(
        "no dbt_project.yml in the current directory or above; run from the repository root or set ECOM_PROJECT_DIR"
    )


def report_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the dashboard goes: ECOM_REPORT_PATH, else data/report/index.html (the project's when
    relative, as `data_path` reads it)."""
    return data_path((os.environ if environ is None else environ).get(REPORT_PATH_ENV) or DEFAULT_REPORT_PATH)


def dbt_executable() -> str:
    """The dbt of this environment, found even when its bin directory is not on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def dbt_folder_problem(root: Path) -> str | None:
    """Why dbt could not make its artifacts' or logs' folder, found before anything lands: dbt
    itself fails with a traceback (after the load, in `ecom run`). dbt reads both against the project
    directory, `root`."""
    for variable, default in (("DBT_TARGET_PATH", "target"), ("DBT_LOG_PATH", "logs")):
        folder = root / (os.environ.get(variable) or default)
        try:
            _look_at(folder)  # a loop of symbolic links, which exists() takes for nothing there
            above = next(path for path in (folder, *folder.parents) if path.exists())
            if not above.is_dir():
                return f"{variable} is {folder}, but {above} is a file, not a folder: point {variable} at a folder"
            if not os.access(above, os.W_OK | os.X_OK):
                return (f"{variable} is {folder}, but {above} cannot be written: point {variable} at a folder "
                        "you can write")
            # dbt makes the folder itself; made and written to here, what the rights above do not
            # tell fails now (a root user's write into /proc or a read-only file system).
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except (OSError, RuntimeError) as exc:  # a folder on the way that cannot be searched, a name too long
            return f"{variable} is {folder}, which cannot be used ({_reason(exc)}): point {variable} at a folder"
    return None


FX_SEED = Path("seeds") / "fx_rates_monthly.csv"


def first_priced_month() -> date:
    """The month from which every currency of the FX seed has rates. Silver quarantines an order
    placed before the first month of its currency's rates as bad_timestamp, so days before this
    one cannot be priced."""
    firsts: dict[str, date] = {}
    with open(project_dir() / FX_SEED, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            month = date.fromisoformat(row["month"])
            firsts[row["currency"]] = min(month, firsts.get(row["currency"], month))
    return max(firsts.values(), default=date.min)


def unpriced_start_problem(day: date, setting: str) -> str | None:
    """Why a first day `day`, given as `setting` (`--start 2014-12-31`), cannot be priced, or None."""
    if day < (first := first_priced_month()):
        return (f"{setting} is before {first}, the first month of the FX rates in {FX_SEED}: silver would "
                "quarantine the orders of the days before it as bad_timestamp; start later, or add earlier "
                "rates to the seed")
    return None


ON, OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_flag(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """An on/off setting: 1/true/yes/on or 0/false/no/off in any case, unset or empty for the
    default. Anything else is refused rather than read as one of them (a mistyped `off` would
    keep automation running; a mistyped `CLICKHOUSE_SECURE=true` would send the password in clear)."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        return default
    if value.lower() in ON + OFF:
        return value.lower() in ON
    raise SettingError(f"{name}={value!r} is neither on nor off: use one of {', '.join(ON)} or {', '.join(OFF)}")


def env_number(name: str, default: float, low: float, high: float, what: str,
               environ: Mapping[str, str] | None = None) -> float:
    """A number setting within [low, high], unset or empty for the default; anything else (nan,
    inf, text, out of range) is refused with a message naming the setting and `what` it must be."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise SettingError(f"{name}={value!r} must be {what}")
    return number


def chdb_path_problem(path: str) -> str | None:
    """Why the embedded engine cannot open the absolute `path`, or None. chDB reads a `?` as the
    start of connection options and opens the path before it: another warehouse than the one
    named, and the lock taken on the wrong folder."""
    if Path(path).parent == Path(path):
        return (f"ECOM_CHDB_PATH={path} is the root of the file system; the warehouse needs a folder of its "
                "own: set ECOM_CHDB_PATH to one (default data/warehouse)")
    if "?" in path:
        return (f"the warehouse path {path} has a '?', which the embedded engine reads as the start of "
                f"connection options (it would open {path.split('?')[0]}); set ECOM_CHDB_PATH to a path "
                "without '?'")
    folder = Path(path)
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() and not (folder / "metadata").is_dir() else []
    except OSError:
        entries = []  # a folder that cannot be listed: the engine says why when it opens it

    def holds(entry: Path, test: Callable[[Path], bool]) -> bool:
        try:
            return test(entry)
        except OSError:  # a subfolder this user cannot search (a volume's lost+found)
            return False

    # The engine writes folders there, and `status` while it has the folder open (`uuid` on a
    # server); any other file (not a hidden one) is someone else's.
    foreign = any(holds(entry, Path.is_file) and not entry.name.startswith(".") and entry.name not in ("status", "uuid")
                  for entry in entries)
    # A folder holding a warehouse one level down: `data` typed for `data/warehouse`.
    inner = next((entry for entry in entries if holds(entry, lambda e: (e / "metadata").is_dir())), None)
    if inner is not None:
        return (f"ECOM_CHDB_PATH={path} is not a warehouse but holds one, {inner}: the engine would make a new, "
                f"empty one beside it; set ECOM_CHDB_PATH to {inner}")
    if foreign:
        return (f"ECOM_CHDB_PATH={path} is a folder of other files, not a warehouse: the engine would write "
                "its own folders among them; set ECOM_CHDB_PATH to a new or empty folder, or to a warehouse")
    return None


def shared_folder_problem(raw_dir: Path, chdb_path: Path) -> str | None:
    """Why the raw exports and the embedded warehouse cannot live where they are set, or None:
    one folder for both puts the engine's folders among the entity folders of the exports (a
    setting copied from the other, most likely). One inside the other is allowed: the loader
    searches only the entity folders for exports, and reports a CSV anywhere else."""
    if raw_dir == chdb_path:
        return (f"the raw exports (ECOM_RAW_DIR) and the warehouse (ECOM_CHDB_PATH) are one folder, {raw_dir}; "
                "give each a folder of its own (default data/raw and data/warehouse)")
    return None


def _ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def named_target(environ: Mapping[str, str] | None = None) -> str:
    """The target DBT_TARGET names, read as profiles.yml reads it (trimmed; unset or blank: dev)."""
    env = os.environ if environ is None else environ
    return (env.get("DBT_TARGET") or "").strip() or "dev"


@dataclass(frozen=True)
class Settings:
    raw_dir: Path = Path("data/raw")
    chdb_path: Path = Path("data/warehouse")
    target: str = "dev"
    host: str = "localhost"
    port: int | None = None
    user: str = "default"
    password: str = field(default="", repr=False)
    secure: bool = False
    cluster: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        target = named_target(env)
        if target not in TARGETS:
            raise SettingError(f"DBT_TARGET={target!r} is not one of {', '.join(TARGETS)}")
        port = env.get("CLICKHOUSE_PORT", "").strip()
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise SettingError(f"CLICKHOUSE_PORT={port!r} is not a port number (1-65535)")
        secure = env_flag("CLICKHOUSE_SECURE", False, env)
        host = env.get("CLICKHOUSE_HOST", "").strip() or "localhost"  # set but empty: the default
        # A URL or host:port would be read as a name and reached as http://http://...:8123.
        if target != "dev" and (any(c in host for c in "/@[]") or (":" in host and not _ipv6(host))):
            raise SettingError(f"CLICKHOUSE_HOST={host!r} is not a host name: give the name alone (such as "
                               "ch.example.com), the port in CLICKHOUSE_PORT and CLICKHOUSE_SECURE=1 for https")
        chdb_path = data_path(env.get("ECOM_CHDB_PATH") or "data/warehouse")  # set but empty: the default
        raw_dir = data_path(env.get("ECOM_RAW_DIR") or "data/raw")
        if target == "dev":
            resolved_chdb = usable_path("ECOM_CHDB_PATH", chdb_path, env.get("ECOM_CHDB_PATH"))
            if problem := chdb_path_problem(str(resolved_chdb)):
                raise SettingError(problem)
            # The raw folder is checked where it is read (the loader): a command that does not read
            # it works whatever it is set to.
            with contextlib.suppress(OSError, RuntimeError):
                if problem := shared_folder_problem(raw_dir.resolve(), resolved_chdb):
                    raise SettingError(problem)
        return cls(
            raw_dir=raw_dir,
            chdb_path=chdb_path,
            target=target,
            host=host,
            port=int(port) if port else None,
            user=env.get("CLICKHOUSE_USER", "default"),
            password=env.get("CLICKHOUSE_PASSWORD", ""),
            secure=secure,
            cluster=(env.get("CLICKHOUSE_CLUSTER") or "default") if target == "cluster" else None,
        )

    @property
    def embedded(self) -> bool:
        return self.target == "dev"

    def describe(self) -> str:
        if self.embedded:
            return f"embedded ClickHouse at {self.chdb_path.resolve()}"
        port = self.port or (8443 if self.secure else 8123)
        where = f"{'https' if self.secure else 'http'}://{self.host}:{port}"
        return f"ClickHouse {where}" + (f" cluster {self.cluster}" if self.cluster else "")
