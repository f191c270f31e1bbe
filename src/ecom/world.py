"""Reference data of the simulated retailer, shared by the generator and the dbt seeds.

The seeds in `seeds/` are rendered from these constants (`python -m ecom.world seeds`), and a
test checks that the files and the constants agree, so the generator never reads `seeds/` at
run time (an installed package does not ship them) and never drifts away from them.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class Country:
    code: str  # ISO 3166-1 alpha-2
    alpha3: str
    name: str
    currency: str
    region: str
    faker_locale: str
    utc_offset_minutes: int  # standard time, used when a source writes local time with an offset
    order_share: float  # share of the orders shipped there
    shipping_fee: str  # standard fee in the local currency
    free_shipping_from: int  # order subtotal (local currency) from which shipping is free


COUNTRIES: tuple[Country, ...] = (
    Country("US", "USA", "United States", "USD", "north_america", "en_US", -300, 0.30, "5.99", 50),
    Country("CA", "CAN", "Canada", "CAD", "north_america", "en_CA", -300, 0.06, "7.99", 75),
    Country("MX", "MEX", "Mexico", "MXN", "north_america", "es_MX", -360, 0.04, "99.00", 999),
    Country("GB", "GBR", "United Kingdom", "GBP", "europe", "en_GB", 0, 0.14, "3.99", 40),
    Country("IE", "IRL", "Ireland", "EUR", "europe", "en_IE", 0, 0.02, "4.95", 45),
    Country("DE", "DEU", "Germany", "EUR", "europe", "de_DE", 60, 0.14, "4.95", 45),
    Country("FR", "FRA", "France", "EUR", "europe", "fr_FR", 60, 0.09, "4.95", 45),
    Country("ES", "ESP", "Spain", "EUR", "europe", "es_ES", 60, 0.05, "4.95", 45),
    Country("IT", "ITA", "Italy", "EUR", "europe", "it_IT", 60, 0.05, "4.95", 45),
    Country("NL", "NLD", "Netherlands", "EUR", "europe", "nl_NL", 60, 0.04, "4.95", 45),
    Country("BE", "BEL", "Belgium", "EUR", "europe", "nl_BE", 60, 0.02, "4.95", 45),
    Country("AT", "AUT", "Austria", "EUR", "europe", "de_AT", 60, 0.02, "4.95", 45),
    Country("SE", "SWE", "Sweden", "SEK", "europe", "sv_SE", 60, 0.01, "49.00", 500),
    Country("DK", "DNK", "Denmark", "DKK", "europe", "da_DK", 60, 0.01, "39.00", 350),
    Country("PL", "POL", "Poland", "PLN", "europe", "pl_PL", 60, 0.01, "14.99", 200),
)


@dataclass(frozen=True)
class Currency:
    code: str
    name: str
    symbol: str  # only the unambiguous ones; '' otherwise
    minor_units: int
    units_per_usd: float  # the fixed rate the shop uses to price its catalog in local currency


CURRENCIES: tuple[Currency, ...] = (
    Currency("USD", "US dollar", "$", 2, 1.0),
    Currency("CAD", "Canadian dollar", "", 2, 1.38),
    Currency("MXN", "Mexican peso", "", 2, 19.0),
    Currency("GBP", "Pound sterling", "£", 2, 0.76),
    Currency("EUR", "Euro", "€", 2, 0.89),
    Currency("SEK", "Swedish krona", "", 2, 10.0),
    Currency("DKK", "Danish krone", "", 2, 6.6),
    Currency("PLN", "Polish zloty", "", 2, 3.8),
)


@dataclass(frozen=True)
class Subcategory:
    category: str
    subcategory: str
    subcategory_name: str
    price_low_usd: int
    price_high_usd: int
    gross_margin: float  # typical (list price - unit cost) / list price
    return_rate: float  # share of delivered orders of this kind that come back


CATEGORIES: tuple[Subcategory, ...] = (
    Subcategory("electronics", "smartphones", "Smartphones", 149, 1199, 0.18, 0.04),
    Subcategory("electronics", "laptops", "Laptops", 399, 2499, 0.15, 0.05),
    Subcategory("electronics", "monitors", "Monitors", 119, 899, 0.20, 0.05),
    Subcategory("electronics", "audio", "Audio", 19, 399, 0.35, 0.06),
    Subcategory("electronics", "wearables", "Wearables", 49, 499, 0.30, 0.06),
    Subcategory("electronics", "accessories", "Phone and computer accessories", 5, 79, 0.55, 0.04),
    Subcategory("home_kitchen", "cookware", "Cookware", 15, 249, 0.42, 0.04),
    Subcategory("home_kitchen", "small_appliances", "Small appliances", 25, 399, 0.32, 0.05),
    Subcategory("home_kitchen", "furniture", "Furniture", 49, 1199, 0.40, 0.07),
    Subcategory("home_kitchen", "decor", "Decor", 9, 149, 0.55, 0.06),
    Subcategory("home_kitchen", "bedding", "Bedding", 19, 299, 0.50, 0.06),
    Subcategory("fashion", "womens_clothing", "Women's clothing", 12, 179, 0.58, 0.22),
    Subcategory("fashion", "mens_clothing", "Men's clothing", 12, 179, 0.58, 0.18),
    Subcategory("fashion", "shoes", "Shoes", 25, 219, 0.52, 0.25),
    Subcategory("fashion", "bags", "Bags", 15, 399, 0.60, 0.12),
    Subcategory("fashion", "jewelry", "Jewelry", 10, 599, 0.65, 0.10),
    Subcategory("beauty", "skincare", "Skincare", 6, 119, 0.62, 0.03),
    Subcategory("beauty", "makeup", "Makeup", 4, 59, 0.64, 0.03),
    Subcategory("beauty", "fragrance", "Fragrance", 20, 179, 0.60, 0.02),
    Subcategory("beauty", "haircare", "Haircare", 5, 79, 0.58, 0.03),
    Subcategory("sports_outdoors", "fitness", "Fitness", 10, 899, 0.40, 0.06),
    Subcategory("sports_outdoors", "camping", "Camping", 15, 499, 0.42, 0.05),
    Subcategory("sports_outdoors", "cycling", "Cycling", 10, 1499, 0.30, 0.05),
    Subcategory("sports_outdoors", "team_sports", "Team sports", 8, 149, 0.45, 0.05),
    Subcategory("toys_games", "board_games", "Board games", 10, 79, 0.45, 0.02),
    Subcategory("toys_games", "building_sets", "Building sets", 10, 299, 0.40, 0.02),
    Subcategory("toys_games", "dolls_figures", "Dolls and figures", 8, 119, 0.48, 0.03),
    Subcategory("toys_games", "puzzles", "Puzzles", 8, 49, 0.50, 0.02),
    Subcategory("books_media", "books", "Books", 5, 45, 0.30, 0.02),
    Subcategory("books_media", "music", "Music", 8, 39, 0.30, 0.01),
    Subcategory("books_media", "movies", "Movies", 6, 35, 0.30, 0.01),
    Subcategory("books_media", "video_games", "Video games", 15, 69, 0.20, 0.03),
    Subcategory("grocery", "coffee_tea", "Coffee and tea", 4, 39, 0.30, 0.01),
    Subcategory("grocery", "snacks", "Snacks", 2, 15, 0.32, 0.01),
    Subcategory("grocery", "pantry", "Pantry", 2, 25, 0.28, 0.01),
    Subcategory("grocery", "beverages", "Beverages", 2, 19, 0.28, 0.01),
)

CATEGORY_NAMES: dict[str, str] = {
    "electronics": "Electronics",
    "home_kitchen": "Home and kitchen",
    "fashion": "Fashion",
    "beauty": "Beauty",
    "sports_outdoors": "Sports and outdoors",
    "toys_games": "Toys and games",
    "books_media": "Books and media",
    "grocery": "Grocery",
}


@dataclass(frozen=True)
class PaymentMethod:
    code: str
    name: str
    is_card_based: bool
    authorizes_at_checkout: bool  # authorized when the order is placed, captured later
    collected_on_delivery: bool


PAYMENT_METHODS: tuple[PaymentMethod, ...] = (
    PaymentMethod("card", "Credit or debit card", True, True, False),
    PaymentMethod("paypal", "PayPal", False, True, False),
    PaymentMethod("bank_transfer", "Bank transfer", False, False, False),
    PaymentMethod("gift_card", "Gift card", True, True, False),
    PaymentMethod("cash_on_delivery", "Cash on delivery", False, False, True),
)


@dataclass(frozen=True)
class Status:
    code: str
    name: str
    status_order: int
    flags: tuple[bool, ...]  # one per name in the table's *_FLAGS


ORDER_STATUS_FLAGS = ("is_revenue", "is_returned", "is_cancelled", "is_final")
ORDER_STATUSES: tuple[Status, ...] = (
    Status("placed", "Placed", 1, (False, False, False, False)),
    Status("paid", "Paid", 2, (True, False, False, False)),
    Status("shipped", "Shipped", 3, (True, False, False, False)),
    Status("delivered", "Delivered", 4, (True, False, False, False)),  # a return can still follow
    Status("cancelled", "Cancelled", 5, (False, False, True, True)),
    Status("returned", "Returned", 6, (False, True, False, True)),
)

PAYMENT_STATUS_FLAGS = ("is_captured", "is_refunded", "is_failed", "is_final")
PAYMENT_STATUSES: tuple[Status, ...] = (
    Status("authorized", "Authorized", 1, (False, False, False, False)),
    Status("captured", "Captured", 2, (True, False, False, False)),
    Status("failed", "Failed", 3, (False, False, True, True)),
    Status("refunded", "Refunded", 4, (False, True, False, True)),
)

CHANNELS: tuple[str, ...] = ("web", "mobile_app", "marketplace")
SEGMENTS: tuple[str, ...] = ("consumer", "small_business", "vip")

# -- monthly FX rates ------------------------------------------------------------------------

FX_FIRST_MONTH = date(2015, 1, 1)
FX_LAST_MONTH = date(2035, 12, 1)

# Yearly averages, USD per unit, 2015..2025; later years drift around the last one.
_FX_ANCHORS: dict[str, tuple[float, ...]] = {
    "CAD": (0.783, 0.755, 0.771, 0.772, 0.754, 0.746, 0.798, 0.769, 0.741, 0.730, 0.716),
    "MXN": (0.0633, 0.0537, 0.0529, 0.0520, 0.0519, 0.0467, 0.0493, 0.0497, 0.0564, 0.0548, 0.0520),
    "GBP": (1.528, 1.355, 1.289, 1.335, 1.277, 1.284, 1.376, 1.237, 1.244, 1.278, 1.320),
    "EUR": (1.110, 1.107, 1.130, 1.181, 1.120, 1.142, 1.183, 1.053, 1.081, 1.082, 1.130),
    "SEK": (0.1187, 0.1169, 0.1172, 0.1152, 0.1058, 0.1088, 0.1166, 0.0990, 0.0944, 0.0946, 0.1000),
    "DKK": (0.1488, 0.1487, 0.1519, 0.1585, 0.1500, 0.1531, 0.1591, 0.1416, 0.1451, 0.1451, 0.1515),
    "PLN": (0.2654, 0.2537, 0.2640, 0.2774, 0.2605, 0.2571, 0.2592, 0.2249, 0.2380, 0.2510, 0.2650),
}


def fx_usd_per_unit(currency: str, month: date) -> float:
    """USD value of one unit of `currency` in `month` (six decimals), deterministic.

    Interpolates the yearly averages (each placed mid-year) and adds a small wave so months
    differ; after the last anchor the rate keeps drifting around it.
    """
    if currency == "USD":
        return 1.0
    anchors = _FX_ANCHORS[currency]
    months = (month.year - FX_FIRST_MONTH.year) * 12 + month.month - 1
    position = (months - 5.5) / 12  # anchor i sits at month 12 * i + 5.5
    low = min(max(math.floor(position), 0), len(anchors) - 1)
    high = min(low + 1, len(anchors) - 1)
    weight = min(max(position - low, 0.0), 1.0)
    level = anchors[low] * (1 - weight) + anchors[high] * weight
    phase = sum(map(ord, currency)) / 7.0
    wave = 0.012 * math.sin(2 * math.pi * months / 17.0 + phase)
    wave += 0.006 * math.sin(2 * math.pi * months / 5.0 + 2 * phase)
    return round(level * (1 + wave), 6)


def fx_months() -> list[date]:
    months, current = [], FX_FIRST_MONTH
    while current <= FX_LAST_MONTH:
        months.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months


# -- seeds -----------------------------------------------------------------------------------


def _flag(value: bool) -> str:
    return "true" if value else "false"


def seed_tables() -> dict[str, list[list[str]]]:
    """Every seed as rows of strings, header first, exactly as written to `seeds/<name>.csv`."""
    tables: dict[str, list[list[str]]] = {}
    tables["countries"] = [["country_code", "alpha3", "country_name", "currency_code", "region"]] + [
        [c.code, c.alpha3, c.name, c.currency, c.region] for c in COUNTRIES
    ]
    tables["currencies"] = [["currency_code", "currency_name", "symbol", "minor_units"]] + [
        [c.code, c.name, c.symbol, str(c.minor_units)] for c in CURRENCIES
    ]
    tables["fx_rates_monthly"] = [["currency", "month", "usd_per_unit"]] + [
        [c.code, month.isoformat(), f"{fx_usd_per_unit(c.code, month):.6f}"]
        for c in CURRENCIES
        for month in fx_months()
    ]
    tables["product_categories"] = [
        ["category", "category_name", "subcategory", "subcategory_name", "price_low_usd", "price_high_usd",
         "gross_margin", "return_rate"]
    ] + [
        [s.category, CATEGORY_NAMES[s.category], s.subcategory, s.subcategory_name, str(s.price_low_usd),
         str(s.price_high_usd), f"{s.gross_margin:.2f}", f"{s.return_rate:.2f}"]
        for s in CATEGORIES
    ]
    tables["payment_methods"] = [
        ["payment_method", "method_name", "is_card_based", "authorizes_at_checkout", "collected_on_delivery"]
    ] + [
        [m.code, m.name, *map(_flag, (m.is_card_based, m.authorizes_at_checkout, m.collected_on_delivery))]
        for m in PAYMENT_METHODS
    ]
    for name, key, statuses, flags in (
        ("order_statuses", "order_status", ORDER_STATUSES, ORDER_STATUS_FLAGS),
        ("payment_statuses", "payment_status", PAYMENT_STATUSES, PAYMENT_STATUS_FLAGS),
    ):
        tables[name] = [[key, "status_name", "status_order", *flags]] + [
            [s.code, s.name, str(s.status_order), *map(_flag, s.flags)] for s in statuses
        ]
    return tables


def render_seed(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_seeds(seed_dir: Path) -> list[Path]:
    """Write every seed CSV into `seed_dir`; returns the paths written."""
    seed_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in seed_tables().items():
        path = seed_dir / f"{name}.csv"
        path.write_text(render_seed(rows), encoding="utf-8", newline="")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m ecom.world seeds
    for written_path in write_seeds(Path(sys.argv[1] if len(sys.argv) > 1 else "seeds")):
        print(written_path)
