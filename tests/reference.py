"""Orders and daily sales figures computed straight from the raw CSV files and the seed files.

A second, independent implementation of SPEC sections 6 and 7 in plain Python (csv,
datetime, decimal): no SQL, no warehouse. Tests compare it with gold.mart_daily_sales and,
in test_marts.py, with every mart.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?"
                  r"(Z|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)$")
_PLAIN = re.compile(r"^\d{4}-\d{2}-\d{2} ([01]\d|2[0-3]):[0-5]\d:[0-5]\d$")
_DAY_FIRST = re.compile(r"^\d{2}/\d{2}/\d{4} ([01]\d|2[0-3]):[0-5]\d$")
_MONEY = re.compile(r"[+-]?(\d{1,9}|\d{0,9}\.\d{1,2}0*)")  # cents at most, below a billion
CENT = Decimal("0.01")
SPACE = " \t\n\r\x0b\x0c\xa0"  # what silver trims (trim_space)


def seed(name: str) -> list[dict[str, str]]:
    with open(SEEDS / f"{name}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def parse_ts(raw: str) -> datetime | None:
    text = raw.strip(SPACE)
    try:
        if _ISO.match(text):
            parsed = datetime.fromisoformat(text)
            micro = parsed.microsecond // 1000 * 1000  # the warehouse keeps milliseconds
            parsed = parsed.astimezone(UTC).replace(microsecond=micro)
        elif _PLAIN.match(text):
            parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        elif _DAY_FIRST.match(text):
            parsed = datetime.strptime(text, "%d/%m/%Y %H:%M").replace(tzinfo=UTC)
        else:
            return None
    except ValueError:
        return None
    # The warehouse's days start in 1970; the epoch itself is a placeholder.
    return parsed if parsed > datetime(1970, 1, 1, tzinfo=UTC) else None


def parse_decimal(raw: str) -> Decimal | None:
    text = raw.strip(SPACE)
    return Decimal(text) if _MONEY.fullmatch(text) else None


def parse_int(raw: str, low: int = -2**31, high: int = 2**31) -> int | None:
    """A whole number in [low, high): Int32 by default, as the warehouse reads it."""
    text = raw.strip(SPACE)
    value = int(text) if re.fullmatch(r"[+-]?\d+", text) else None
    return value if value is not None and low <= value < high else None


def parse_bool(raw: str) -> bool | None:
    text = raw.strip(SPACE).lower()
    if text in {"true", "1", "yes", "t", "y"}:
        return True
    if text in {"false", "0", "no", "f", "n"}:
        return False
    return None


def clean_code(raw: str) -> str:
    return re.sub(r"[ -]+", "_", raw.strip(SPACE).lower())


@dataclass
class Row:
    values: dict[str, str]
    file_date: date
    order: tuple[int, int]  # (file index in landing order, row number)


def read_entity(raw_dir: Path, entity: str) -> list[Row]:
    """Rows of every well-formed file of the entity, in the loader's landing order."""
    malformed = set()
    for manifest in (raw_dir / "_manifest").glob("*.json"):
        malformed |= {item["path"] for item in json.loads(manifest.read_text())["malformed_files"]}
    rows: list[Row] = []
    files = sorted((raw_dir / entity).rglob("*.csv"), key=lambda p: (p.name[len(entity) + 1:][:8], str(p)))
    for index, path in enumerate(files):
        if path.relative_to(raw_dir).as_posix() in malformed:
            continue
        ymd = path.name[len(entity) + 1:][:8]
        file_date = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for number, values in enumerate(csv.DictReader(handle), start=1):
                rows.append(Row(values, file_date, (index, number)))
    return rows


def without_duplicates(rows: list[Row]) -> list[Row]:
    """Every row but the copies of it further up the same file: the last copy in a file is the
    row's version. A row repeating one of an earlier file stays, as a version sent again."""
    last = {(row.order[0], tuple(row.values.values())): row.order for row in rows}
    return [row for row in rows if last[(row.order[0], tuple(row.values.values()))] == row.order]


def _future(ts: datetime, file_date: date) -> bool:
    return ts > datetime(file_date.year, file_date.month, file_date.day, tzinfo=UTC) + timedelta(days=2)


def valid_orders(raw_dir: Path) -> dict[str, dict]:
    """order_id -> the latest valid version of the order (SPEC section 6)."""
    currencies = {c["currency_code"]: c["currency_code"] for c in seed("currencies")}
    currencies |= {c["symbol"]: c["currency_code"] for c in seed("currencies") if c["symbol"]}
    # `$` on an order shipped to Canada or Mexico is that country's currency (orders_versions).
    dollar_countries = {c[name].upper(): c["currency_code"] for c in seed("countries") for name in
                        ("country_code", "alpha3", "country_name") if c["currency_code"] in ("CAD", "MXN")}
    statuses = {s["order_status"] for s in seed("order_statuses")}
    first_rates = {currency: min(months) for currency, months in fx_rates().items()}
    latest: dict[str, tuple] = {}
    for row in without_duplicates(read_entity(raw_dir, "orders")):
        v = row.values
        order_id = v["order_id"].strip(SPACE)
        order_ts, updated_at = parse_ts(v["order_ts"]), parse_ts(v["updated_at"])
        currency = currencies.get(v["currency"].strip(SPACE).upper(), "")
        if v["currency"].strip(SPACE) == "$":
            currency = dollar_countries.get(v["shipping_country"].strip(SPACE).upper(), currency)
        fee = v["shipping_fee"].strip(SPACE)
        discount = parse_decimal(v["order_discount"]) if v["order_discount"].strip(SPACE) else Decimal(0)
        is_test = parse_bool(v["is_test"])  # an empty one too is bad_value
        if (
            not order_id or order_ts is None or updated_at is None
            or _future(order_ts, row.file_date) or _future(updated_at, row.file_date)
            or not currency
            # Before its currency's first FX month: no USD amount (a currency with no rate is gold's to report).
            or order_ts.date().replace(day=1) < first_rates.get(currency, date.min)
            or (fee and parse_decimal(fee) is None) or discount is None or discount < 0
            or is_test is None or clean_code(v["status"]) not in statuses or is_test
        ):
            continue
        candidate = (updated_at, row.order, {
            "order_id": order_id,
            "customer_id": v["customer_id"].strip(SPACE) or None,
            "order_ts": order_ts,
            "status": clean_code(v["status"]),
            "currency": currency,
            "order_discount": discount,
        })
        if order_id not in latest or candidate[:2] > latest[order_id][:2]:
            latest[order_id] = candidate
    return {order_id: candidate[2] for order_id, candidate in latest.items()}


def valid_lines(raw_dir: Path) -> dict[tuple[str, int], dict]:
    """(order_id, line_number) -> the latest valid version of the line."""
    latest: dict[tuple[str, int], tuple] = {}
    for row in without_duplicates(read_entity(raw_dir, "order_items")):
        v = row.values
        order_id, product_id = v["order_id"].strip(SPACE), v["product_id"].strip(SPACE)
        line_number, quantity = parse_int(v["line_number"], 0, 2**32), parse_int(v["quantity"])  # UInt32, Int32
        unit_price = parse_decimal(v["unit_price"])
        discount_raw = v["line_discount"].strip(SPACE)
        discount = parse_decimal(discount_raw) if discount_raw else Decimal(0)
        if (
            not order_id or not product_id or not v["line_number"].strip(SPACE)
            or line_number is None or line_number < 0 or quantity is None or unit_price is None
            or discount is None or quantity <= 0 or unit_price <= 0
            or quantity * unit_price >= 10**9 or discount < 0 or discount > quantity * unit_price
        ):
            continue
        key = (order_id, line_number)
        if key not in latest or row.order > latest[key][0]:
            latest[key] = (row.order, {"product_id": product_id, "quantity": quantity,
                                      "amount": quantity * unit_price - discount})
    return {key: candidate[1] for key, candidate in latest.items()}


@dataclass(frozen=True)
class Line:
    product_id: str
    quantity: int
    amount: Decimal  # line_amount, in the order's currency


@dataclass(frozen=True)
class Order:
    """An order at its latest valid version with its valid lines, as gold reads it (SPEC 7)."""

    order_id: str
    customer_id: str | None  # None: a guest order
    order_ts: datetime
    status: str
    usd_per_unit: Decimal
    lines: tuple[Line, ...]
    net_revenue: Decimal  # in the order's currency
    is_revenue: bool
    is_returned: bool
    is_cancelled: bool

    @property
    def order_date(self) -> date:
        return self.order_ts.date()

    @property
    def net_revenue_usd(self) -> Decimal:
        return self.net_revenue * self.usd_per_unit


def cents(amount: Decimal) -> Decimal:
    """A USD figure as the marts publish it: rounded to cents, half away from zero."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def fx_rates() -> dict[str, dict[date, Decimal]]:
    """currency -> month -> usd_per_unit, from the FX seed."""
    rates: dict[str, dict[date, Decimal]] = defaultdict(dict)
    for rate in seed("fx_rates_monthly"):
        rates[rate["currency"]][date.fromisoformat(rate["month"])] = Decimal(rate["usd_per_unit"])
    return rates


def fx_month(rates: dict[str, dict[date, Decimal]], currency: str, day: date) -> date | None:
    """The month whose rate converts the day: its own, or the seed's latest earlier one of the currency."""
    return max((month for month in rates[currency] if month <= day), default=None)


def usd_per_unit(rates: dict[str, dict[date, Decimal]], currency: str, day: date) -> Decimal:
    """The rate of fx_month; 0 when the seed has none for the currency that early."""
    month = fx_month(rates, currency, day)
    return rates[currency][month] if month else Decimal(0)


def orders(raw_dir: Path) -> dict[str, Order]:
    """order_id -> every valid order of the raw files, with its lines, status flags and FX rate."""
    statuses = {s["order_status"]: s for s in seed("order_statuses")}
    rates = fx_rates()
    lines_by_order: dict[str, list[Line]] = defaultdict(list)
    for (order_id, _line_number), line in sorted(valid_lines(raw_dir).items()):
        lines_by_order[order_id].append(Line(line["product_id"], line["quantity"], line["amount"]))
    result = {}
    for order_id, order in valid_orders(raw_dir).items():
        lines = tuple(lines_by_order[order_id])
        flags = statuses[order["status"]]
        result[order_id] = Order(
            order_id=order_id,
            customer_id=order["customer_id"],
            order_ts=order["order_ts"],
            status=order["status"],
            usd_per_unit=usd_per_unit(rates, order["currency"], order["order_ts"].date()),
            lines=lines,
            net_revenue=sum((line.amount for line in lines), Decimal(0)) - order["order_discount"],
            is_revenue=flags["is_revenue"] == "true" and bool(lines),
            is_returned=flags["is_returned"] == "true" and bool(lines),
            is_cancelled=flags["is_cancelled"] == "true",
        )
    return result


def first_revenue_orders(all_orders: dict[str, Order]) -> dict[str, Order]:
    """customer_id -> the customer's revenue order with the earliest order_ts, ties by order_id."""
    first: dict[str, Order] = {}
    for order in sorted(all_orders.values(), key=lambda order: (order.order_ts, order.order_id)):
        if order.is_revenue and order.customer_id and order.customer_id not in first:
            first[order.customer_id] = order
    return first


def daily_sales(raw_dir: Path) -> dict[date, dict]:
    """order_date -> revenue_orders, net_revenue_usd, items_sold, new and returning customers."""
    all_orders = orders(raw_dir)
    first = first_revenue_orders(all_orders)
    days: dict[date, dict] = defaultdict(lambda: {
        "revenue_orders": 0, "net_revenue_usd": Decimal(0), "items_sold": 0, "new": set(), "returning": set(),
    })
    for order in all_orders.values():
        if not order.is_revenue:
            continue
        figures = days[order.order_date]
        figures["revenue_orders"] += 1
        figures["net_revenue_usd"] += order.net_revenue_usd
        figures["items_sold"] += sum(line.quantity for line in order.lines)
        if customer := order.customer_id:
            (figures["new"] if first[customer].order_date == order.order_date else figures["returning"]).add(customer)
    return {
        day: {
            "revenue_orders": f["revenue_orders"],
            "net_revenue_usd": cents(f["net_revenue_usd"]),
            "items_sold": f["items_sold"],
            "new_customers": len(f["new"]),
            "returning_customers": len(f["returning"]),
        }
        for day, f in days.items()
    }
