"""The raw source contract (SPEC section 4): entities, their columns and where files live."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (
        "customer_id", "first_name", "last_name", "email", "phone", "birth_date", "signup_at",
        "country", "city", "postal_code", "segment", "marketing_opt_in", "updated_at",
    ),
    "products": (
        "product_id", "sku", "product_name", "category", "subcategory", "brand", "unit_cost_usd",
        "list_price", "currency", "is_active", "updated_at",
    ),
    "orders": (
        "order_id", "customer_id", "order_ts", "status", "channel", "currency", "shipping_fee",
        "order_discount", "coupon_code", "shipping_country", "is_test", "updated_at",
    ),
    "order_items": ("order_id", "line_number", "product_id", "quantity", "unit_price", "line_discount"),
    "payments": (
        "payment_id", "order_id", "payment_ts", "method", "amount", "currency", "status", "updated_at",
    ),
}
ENTITIES: tuple[str, ...] = tuple(COLUMNS)

# Lineage columns every bronze table carries after the source columns. The file's path, checksum
# and batch hold one value per file: LowCardinality keeps them as a dictionary, so the rows of a
# file do not each carry ~150 bytes of them (landing 10M lines: an INSERT 1.5-2x faster).
LINEAGE: tuple[tuple[str, str], ...] = (
    ("_source_file", "LowCardinality(String)"),
    ("_row_number", "UInt64"),
    ("_file_sha256", "LowCardinality(String)"),
    ("_file_date", "Date"),
    ("_batch_id", "LowCardinality(String)"),
    ("_ingested_at", "DateTime64(3, 'UTC')"),
)

_NAME = re.compile(r"^(?P<entity>[a-z_]+)_(?P<ymd>\d{8})(?:_part\d+)?\.csv$")


def relative_path(entity: str, day: date, part: int = 1) -> Path:
    suffix = "" if part == 1 else f"_part{part}"
    return Path(entity, f"{day:%Y}", f"{day:%m}", f"{day:%d}", f"{entity}_{day:%Y%m%d}{suffix}.csv")


FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2149, 6, 6)
# The generator's bounds: it builds a day's files in memory (about 2.5 GB per million orders of a
# day), and draws names with Faker, which takes a 32-bit seed.
MAX_ORDERS_PER_DAY = 1_000_000
MAX_SEED = (1 << 32) - 1


def unloadable_days(start: date, days: int) -> str | None:
    """Why `days` days from `start` are not all days a ClickHouse `Date` holds (the loader rejects
    a file of any other day), or None."""
    if start < FIRST_DAY:
        return f"--start {start} is before {FIRST_DAY}, the first day the pipeline can load"
    if (LAST_DAY - start).days < days - 1:
        return (f"--start {start} with --days {days} goes past {LAST_DAY}, the last day the pipeline can load; "
                "start earlier or write fewer days")
    return None


def export_name(filename: str) -> tuple[str, str] | None:
    """(entity, YYYYMMDD) of a file named `<entity>_YYYYMMDD[_partN].csv`, wherever it lies."""
    match = _NAME.match(filename)
    return (match["entity"], match["ymd"]) if match else None


def name_digits(relative: Path) -> str | None:
    """The YYYYMMDD of a name that follows the contract, whether or not it is a calendar day."""
    parts, named = relative.parts, export_name(relative.name)
    if len(parts) != 5 or not named or named[0] != parts[0] or parts[0] not in COLUMNS:
        return None
    ymd = named[1]
    return ymd if (ymd[:4], ymd[4:6], ymd[6:]) == parts[1:4] else None


def name_day(relative: Path) -> date | None:
    """The day a name follows the contract for, whether or not a `Date` can hold it."""
    if (ymd := name_digits(relative)) is None:
        return None
    try:
        return date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
    except ValueError:
        return None


def parse_name(relative: Path) -> tuple[str, date] | None:
    """(entity, partition date) of `<entity>/YYYY/MM/DD/<entity>_YYYYMMDD[_partN].csv`, else None.
    A day ClickHouse's Date cannot hold is None too: it would be stored as one of its ends."""
    day = name_day(relative)
    return (relative.parts[0], day) if day and FIRST_DAY <= day <= LAST_DAY else None
