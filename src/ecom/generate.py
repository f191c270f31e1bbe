"""The source simulator behind `ecom generate` (SPEC section 4).

It plays the source systems of the retailer (CRM, catalog, shop, payment provider) and
writes what they export each day: `<out>/<entity>/YYYY/MM/DD/<entity>_YYYYMMDD.csv`, the
rows created or changed that day, dirty at `dirty_rate`, plus a manifest per day
(`<out>/_manifest/manifest_YYYYMMDD.json`) that counts every kind of dirt it injected, so the
data-quality mart can be checked against it reason by reason. While a day is being written,
`_manifest/writing_YYYYMMDD.json` names its world: a run stopped midway leaves it, and the
same world may write that day again.

How the world stays the same world:

* Every random draw comes from a generator keyed by (seed, stream, date), so a day's files
  depend only on the arguments and on earlier days, never on which range is asked for.
* The exports start on the world's first day, its *origin*: that day's customers and
  products files also carry the initial load (customers who signed up during the two
  previous years, the catalog as it stood). Generating a range that starts later in an
  output directory that already holds earlier days continues their world (the origin is
  read from the manifests), so `--start D --days 10` then `--start D+10 --days 5` writes the
  same files for D+10..D+14 as `--start D --days 15`. `orders_per_day`, `seed` and
  `dirty_rate` are part of the world and must stay the same to continue it. A run may write
  again the days of its own world, byte for byte, but nothing else: a day that holds a CSV
  file no manifest lists, or another world's manifest, is refused before anything is written.
* Populations are deterministic: customers sign up day by day, the catalog grows day by day,
  and an order's whole life (payment, shipping, delivery, return) is drawn the day it is
  placed, so the status changes a day must export are recomputed from the placement days.

Facts are drawn in bulk with numpy; Faker only fills small pools of names, cities, phone
numbers and brands once per seed.

Dirt, at `dirty_rate` per row and per kind (none at all when it is 0):

* Quarantine defects (silver sends the row to quarantine with this reason): `missing_key`,
  `bad_timestamp`, `future_timestamp`, `bad_currency`, `test_order`, `non_positive_quantity`,
  `non_positive_price`, `bad_discount`. Each defective row carries exactly one defect, so an
  entity's kinds but `test_order` take together at most half of its rows
  (`MAX_QUARANTINED_SHARE`: each kind at most 0.5 / kinds, whatever the rate); test orders,
  drawn at the rate among all orders, are quarantined as `test_order` on top, every version of
  them. Clean rows break no rule, and the first version of an order that is not a test order,
  or of a product, is never defective (so late headers and late products can be counted
  exactly). A non-positive quantity is 0 or the quantity negated.
* Cosmetic dirt (silver keeps the row and cleans it, but for `price_off_100x`: silver has no
  rule for a wrong price, so the line counts at that price; docs/metrics.md), see
  `COSMETIC_KINDS`.
* Exact duplicate rows inside a file, order lines whose product reaches the catalog a few
  days late, order headers that arrive the day after their lines, and now and then a
  malformed extra file `<entity>_YYYYMMDD_part2.csv` (never the main file of a day).

The manifest of a day holds `date`, `seed`, `dirty_rate`, `orders_per_day`, `origin`,
`files` (path -> entity, data rows, `malformed` reason or null), `malformed_files` and, per
entity, the counts over its well-formed files: `rows` (data rows, copies included),
`exact_duplicate` (the extra copies), `quarantine` (reason -> distinct rows), `cosmetic`
(kind -> distinct valid rows carrying it), `resent_versions` (rows that are not the first
version of their key), and `new_customers`, `new_products`, `new_orders`, `late_headers`,
`guest_orders`, `late_product`, `late_order_header`, `lines_of_test_orders` where they apply.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import multiprocessing
import os
import queue
import sys
import traceback
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

from ecom import world
from ecom.contract import COLUMNS, ENTITIES, MAX_ORDERS_PER_DAY, MAX_SEED, relative_path, unloadable_days

MANIFEST_DIR = "_manifest"
# Recorded in each day's manifest: what wrote its bytes (2: a test order's `is_test` spelt every way).
GENERATOR_VERSION = 2

# -- value sets and source conventions --------------------------------------------------------

COUNTRY_CODES = tuple(c.code for c in world.COUNTRIES)
CURRENCY_CODES = tuple(c.code for c in world.CURRENCIES)
ORDER_STATUS_CODES = tuple(s.code for s in world.ORDER_STATUSES)
PAYMENT_STATUS_CODES = tuple(s.code for s in world.PAYMENT_STATUSES)
METHOD_CODES = tuple(m.code for m in world.PAYMENT_METHODS)
SUBCATEGORIES = world.CATEGORIES

QUARANTINE_REASONS: dict[str, tuple[str, ...]] = {
    "customers": ("missing_key", "bad_timestamp", "future_timestamp"),
    "products": ("missing_key", "bad_timestamp", "future_timestamp", "bad_currency"),
    "orders": ("missing_key", "bad_timestamp", "future_timestamp", "bad_currency", "test_order"),
    "order_items": ("missing_key", "non_positive_quantity", "non_positive_price", "bad_discount"),
    "payments": ("missing_key", "bad_timestamp", "future_timestamp", "bad_currency"),
}

COSMETIC_KINDS: dict[str, tuple[str, ...]] = {
    "customers": ("email_format", "invalid_email", "mixed_case_code", "country_name", "country_lowercase",
                  "country_alpha3", "boolean_format", "timestamp_format", "missing_optional"),
    "products": ("mixed_case_code", "currency_lowercase", "currency_symbol", "boolean_format",
                 "timestamp_format", "missing_optional"),
    "orders": ("mixed_case_code", "currency_lowercase", "currency_symbol", "country_name",
               "country_lowercase", "country_alpha3", "boolean_format", "timestamp_format"),
    "order_items": ("price_off_100x",),
    "payments": ("mixed_case_code", "currency_lowercase", "currency_symbol", "timestamp_format"),
}

MALFORMED_REASONS = ("wrong_column_count", "not_utf8", "empty", "wrong_header")

# The business keys `missing_key` empties. An order line keeps its order id and loses its
# product instead, so that no line that lost its key repeats a line of another day byte for byte.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "products": ("product_id",),
    "orders": ("order_id",),
    "order_items": ("product_id",),
    "payments": ("payment_id", "order_id"),
}
TIMESTAMP_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("signup_at", "updated_at"),
    "products": ("updated_at",),
    "orders": ("order_ts", "updated_at"),
    "order_items": (),
    "payments": ("payment_ts", "updated_at"),
}
# Each source system writes its timestamps and booleans its own way; other spellings are dirt.
TIMESTAMP_STYLES = ("iso_z", "iso_ms_z", "iso_offset", "iso_ms_offset", "space", "dmy")
NATIVE_TIMESTAMP = {"customers": "iso_z", "products": "space", "orders": "space", "payments": "iso_ms_z"}
BOOLEAN_COLUMN = {"customers": "marketing_opt_in", "products": "is_active", "orders": "is_test"}
NATIVE_BOOLEAN = {"customers": ("false", "true"), "products": ("0", "1"), "orders": ("false", "true")}
BOOLEAN_SPELLINGS = {False: ("false", "False", "FALSE", "0", "no", "No", "NO"),
                     True: ("true", "True", "TRUE", "1", "yes", "Yes", "YES")}
CODE_COLUMNS = {"customers": ("segment",), "products": ("category", "subcategory"),
                "orders": ("status", "channel"), "payments": ("method", "status")}
COUNTRY_COLUMN = {"customers": "country", "orders": "shipping_country"}
CURRENCY_COLUMN = {"products": "currency", "orders": "currency", "payments": "currency"}
OPTIONAL_COLUMNS = {"customers": ("phone", "birth_date", "city", "postal_code"), "products": ("brand",)}

BAD_CURRENCIES = ("XYZ", "¥", "US Dollar", "EURO", "CHF", "RMB", "N/A")
WRONG_HEADER_NAMES = {
    "customer_id": "customer_no", "email": "email_address", "signup_at": "signup_date",
    "updated_at": "last_modified", "product_id": "product_code", "list_price": "price",
    "order_id": "order_no", "order_ts": "order_time",
    "unit_price": "price_each", "quantity": "qty", "payment_id": "transaction_id", "amount": "amount_paid",
}

# -- the shape of the business ------------------------------------------------------------

BASE_CUSTOMER_DAYS = 730  # the initial customer load covers the two years before the origin
LOOKBACK_DAYS = 40  # an order's life (placed .. refunded) is always shorter than this
NEAR_DAYS = 12  # status changes up to this many days after placement are rendered in bulk
PRICE_CHANGES = 3  # a product's list price changes at most this often
NO_DAY = 1 << 30  # "never" for event days

WEEKDAY_FACTOR = (1.02, 1.00, 0.98, 0.97, 0.92, 0.86, 1.20)  # Monday .. Sunday
MONTH_FACTOR = (0.93, 0.86, 0.93, 0.92, 0.95, 0.93, 0.97, 0.93, 0.92, 1.00, 1.22, 1.34)
YEARLY_GROWTH = 0.10
NEW_CUSTOMER_SHARE = 0.28
GUEST_SHARE = 0.03
# local-time hour profile of orders (0 .. 23 h)
HOUR_WEIGHTS = np.array([0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.5, 0.9, 1.3, 1.6, 1.8, 2.0, 2.2, 2.1, 1.9, 1.8,
                         1.8, 1.9, 2.2, 2.7, 3.0, 2.9, 2.2, 1.3])
CHANNEL_SHARE = {False: (0.52, 0.33, 0.15), True: (0.44, 0.43, 0.13)}  # weekday, weekend
# payment method shares (card, paypal, bank_transfer, gift_card, cash_on_delivery) per country
_METHOD_MIX = {
    "north_america": (0.72, 0.20, 0.03, 0.04, 0.01),
    "MX": (0.45, 0.15, 0.12, 0.03, 0.25),
    "GB": (0.68, 0.25, 0.03, 0.04, 0.00), "IE": (0.68, 0.25, 0.03, 0.04, 0.00),
    "DE": (0.27, 0.38, 0.25, 0.03, 0.07), "AT": (0.27, 0.38, 0.25, 0.03, 0.07),
    "NL": (0.25, 0.25, 0.45, 0.05, 0.00), "BE": (0.25, 0.25, 0.45, 0.05, 0.00),
    "FR": (0.62, 0.25, 0.05, 0.03, 0.05), "ES": (0.62, 0.25, 0.05, 0.03, 0.05),
    "IT": (0.62, 0.25, 0.05, 0.03, 0.05),
    "SE": (0.60, 0.15, 0.20, 0.05, 0.00), "DK": (0.60, 0.15, 0.20, 0.05, 0.00),
    "PL": (0.25, 0.10, 0.45, 0.05, 0.15),
}
METHOD_MIX = np.array([_METHOD_MIX.get(c.code, _METHOD_MIX.get(c.region)) for c in world.COUNTRIES])
CARD, PAYPAL, BANK, GIFT, COD = range(5)
PLACED, PAID, SHIPPED, DELIVERED, CANCELLED, RETURNED = range(6)
AUTHORIZED, CAPTURED, FAILED, REFUNDED = range(4)

# coupon: (code, kind, value); kind pct = percent of the subtotal, fixed = USD amount, ship = free shipping
COUPONS = (("WELCOME10", "pct", 10), ("SAVE10", "fixed", 10), ("FREESHIP", "ship", 0),
           ("SPRING15", "pct", 15), ("SUMMER20", "pct", 20), ("BLACKFRIDAY25", "pct", 25),
           ("XMAS15", "pct", 15))

# what the catalog calls a product of each subcategory
NOUNS: dict[str, tuple[str, ...]] = {
    "smartphones": ("Smartphone", "Phone"),
    "laptops": ("Laptop", "Notebook", "Ultrabook"),
    "monitors": ("Monitor", "Display"),
    "audio": ("Headphones", "Earbuds", "Speaker", "Soundbar"),
    "wearables": ("Smartwatch", "Fitness Tracker"),
    "accessories": ("Charger", "USB-C Cable", "Power Bank", "Phone Case", "Keyboard", "Mouse"),
    "cookware": ("Frying Pan", "Saucepan", "Knife Set", "Dutch Oven"),
    "small_appliances": ("Coffee Maker", "Blender", "Kettle", "Toaster", "Air Fryer"),
    "furniture": ("Desk", "Office Chair", "Bookshelf", "Side Table"),
    "decor": ("Vase", "Table Lamp", "Mirror", "Candle Set"),
    "bedding": ("Duvet Cover", "Pillow", "Blanket", "Sheet Set"),
    "womens_clothing": ("Dress", "Blouse", "Jeans", "Coat"),
    "mens_clothing": ("Shirt", "Chinos", "Jacket", "Sweater"),
    "shoes": ("Sneakers", "Boots", "Sandals", "Loafers"),
    "bags": ("Backpack", "Tote Bag", "Wallet", "Duffel Bag"),
    "jewelry": ("Necklace", "Bracelet", "Earrings", "Ring"),
    "skincare": ("Face Cream", "Serum", "Cleanser", "Sunscreen"),
    "makeup": ("Lipstick", "Mascara", "Foundation", "Eyeliner"),
    "fragrance": ("Eau de Parfum", "Eau de Toilette", "Body Mist"),
    "haircare": ("Shampoo", "Conditioner", "Hair Dryer", "Hair Oil"),
    "fitness": ("Yoga Mat", "Dumbbell Set", "Rowing Machine", "Kettlebell"),
    "camping": ("Tent", "Sleeping Bag", "Camping Stove", "Headlamp"),
    "cycling": ("Bike Helmet", "Bike Light", "City Bike", "Bike Lock"),
    "team_sports": ("Football", "Basketball", "Shin Guards", "Jersey"),
    "board_games": ("Board Game", "Card Game", "Strategy Game"),
    "building_sets": ("Building Set", "Construction Kit"),
    "dolls_figures": ("Action Figure", "Doll", "Plush Toy"),
    "puzzles": ("Jigsaw Puzzle", "3D Puzzle", "Puzzle Box"),
    "books": ("Novel", "Cookbook", "Travel Guide", "Biography"),
    "music": ("Vinyl Record", "CD Album"),
    "movies": ("Blu-ray", "DVD Box Set"),
    "video_games": ("Video Game", "Game Controller"),
    "coffee_tea": ("Coffee Beans", "Green Tea", "Espresso Pods"),
    "snacks": ("Granola Bars", "Dark Chocolate", "Trail Mix"),
    "pantry": ("Olive Oil", "Pasta", "Honey", "Spice Set"),
    "beverages": ("Sparkling Water", "Juice", "Energy Drink"),
}
ADJECTIVES = ("Pro", "Ultra", "Classic", "Essential", "Compact", "Premium", "Eco", "Smart", "Lite", "Max",
              "Air", "Plus", "Studio", "Urban", "Nordic", "Everyday", "Active", "Signature")
COLOURED_CATEGORIES = ("electronics", "home_kitchen", "fashion", "sports_outdoors")
MODEL_CATEGORIES = ("electronics", "home_kitchen", "sports_outdoors", "toys_games")
COLOURS = ("Black", "White", "Navy", "Red", "Graphite", "Sand", "Olive", "Silver", "Rose", "Blue")
CATEGORY_SKU = {"electronics": "ELE", "home_kitchen": "HOM", "fashion": "FAS", "beauty": "BEA",
                "sports_outdoors": "SPO", "toys_games": "TOY", "books_media": "BOO", "grocery": "GRO"}
CATEGORY_SEASON = {  # month multipliers of demand per category (Jan .. Dec)
    "toys_games": (0.8, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.9, 1.1, 1.7, 2.3),
    "electronics": (0.9, 0.85, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0, 1.4, 1.5),
    "sports_outdoors": (1.2, 0.9, 1.0, 1.1, 1.3, 1.3, 1.3, 1.2, 1.0, 0.9, 0.8, 0.9),
    "fashion": (1.1, 0.9, 1.1, 1.1, 1.0, 1.0, 0.9, 0.9, 1.1, 1.1, 1.1, 1.1),
}

DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)

# streams of random numbers: each (seed, stream, day) has its own generator
S_COUNTS, S_BASE_CUSTOMERS, S_CUSTOMERS, S_BASE_PRODUCTS, S_PRODUCTS, S_ORDERS, S_FILES, S_DIRT = range(1, 9)


def _rng(seed: int, stream: int, key: int, *more: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed % (1 << 64), stream, key, *more]))


def _day_num(day: date) -> int:
    return (day - _EPOCH).days


def _date(day_num: int) -> date:
    return _EPOCH + timedelta(days=int(day_num))


# -- formatting helpers ----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _clock() -> np.ndarray:
    return np.array([f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)],
                    dtype=object)


@lru_cache(maxsize=1)
def _millis() -> np.ndarray:
    return np.array([f"{i:03d}" for i in range(1000)], dtype=object)


def _strings_of(values: np.ndarray, render) -> np.ndarray:
    """Render an array of numbers as strings, each distinct value once."""
    values = np.asarray(values)
    if values.size == 0:
        return np.empty(0, dtype=object)
    unique, inverse = np.unique(values, return_inverse=True)
    return np.array([render(v) for v in unique.tolist()], dtype=object)[inverse]


_PADDED: dict[int, np.ndarray] = {}


def _padded(width: int, index: np.ndarray) -> np.ndarray:
    """Zero-padded `index + 1` (keys number from 1), from a table that grows as needed."""
    index = np.asarray(index, dtype=np.int64)
    table = _PADDED.get(width, np.empty(0, dtype=object))
    needed = int(index.max()) + 1 if index.size else 0
    if needed > len(table):
        size = max(needed, 2 * len(table), 1024)
        table = np.array([f"{i + 1:0{width}d}" for i in range(size)], dtype=object)
        _PADDED[width] = table
    return table[index]


def _money1(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def _money(cents: np.ndarray) -> np.ndarray:
    return _strings_of(np.asarray(cents, dtype=np.int64), _money1)


def _money_or_blank(cents: np.ndarray) -> np.ndarray:
    """Money strings; negative cents mean 'no value' and become ''."""
    out = _money(cents)
    out[np.asarray(cents) < 0] = ""
    return out


@lru_cache(maxsize=4)
def _clock_table(suffix: str) -> np.ndarray:
    return _clock() + suffix


@lru_cache(maxsize=1)
def _millis_z() -> np.ndarray:
    return _millis() + "Z"


def _day_prefixes(days: np.ndarray, separator: str, pattern: str = "%Y-%m-%d") -> np.ndarray:
    """The date of each day number in `pattern`, followed by `separator`."""
    days = np.asarray(days, dtype=np.int64)
    if days.size == 0:
        return np.empty(0, dtype=object)
    low, high = int(days.min()), int(days.max())
    if low == high:
        return np.full(len(days), _day_text(low, separator, pattern), dtype=object)
    if high - low > 4096:
        return _strings_of(days, lambda d: _day_text(d, separator, pattern))
    table = np.array([_day_text(d, separator, pattern) for d in range(low, high + 1)], dtype=object)
    return table[days - low]


@lru_cache(maxsize=1 << 16)
def _day_text(day: int, separator: str, pattern: str) -> str:
    return _date(day).strftime(pattern) + separator


def _day_strings(days: np.ndarray) -> np.ndarray:
    return _day_prefixes(days, "")


@lru_cache(maxsize=1)
def _minutes() -> np.ndarray:
    return np.array([f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)], dtype=object)


def _offset_text(minutes: int) -> str:
    hours, rest = divmod(abs(minutes), 60)
    return f"{'-' if minutes < 0 else '+'}{hours:02d}:{rest:02d}"


def _format_ts(ms: np.ndarray, style: str, offset: np.ndarray | None = None) -> np.ndarray:
    """Timestamps (ms since epoch, UTC) in any accepted style, vectorised.

    `space` (YYYY-MM-DD HH:MM:SS), `iso_z` and `iso_ms_z` (ISO 8601 in UTC, with or without
    milliseconds), `dmy` (DD/MM/YYYY HH:MM), and `iso_offset` and `iso_ms_offset`: local time
    `offset` minutes from UTC, followed by that offset.
    """
    ms = np.asarray(ms, dtype=np.int64)
    if style in ("iso_offset", "iso_ms_offset"):
        offset = np.zeros(len(ms), dtype=np.int64) if offset is None else np.asarray(offset, dtype=np.int64)
        ms = ms + offset * 60_000
    days = ms // DAY_MS
    rest = ms - days * DAY_MS
    seconds = rest // 1000
    if style == "space":
        return _day_prefixes(days, " ") + _clock()[seconds]
    if style == "iso_z":
        return _day_prefixes(days, "T") + _clock_table("Z")[seconds]
    if style == "iso_ms_z":
        return _day_prefixes(days, "T") + _clock_table(".")[seconds] + _millis_z()[rest % 1000]
    if style == "dmy":
        return _day_prefixes(days, " ", "%d/%m/%Y") + _minutes()[seconds // 60]
    if style == "iso_offset":
        return _day_prefixes(days, "T") + _clock()[seconds] + _strings_of(offset, _offset_text)
    if style == "iso_ms_offset":
        return (_day_prefixes(days, "T") + _clock_table(".")[seconds] + _millis()[rest % 1000]
                + _strings_of(offset, _offset_text))
    raise ValueError(style)


def _bad_timestamp(ms: int, variant: int) -> str:
    """A value silver cannot read as a timestamp (wrong format, impossible date, empty)."""
    moment = datetime(1970, 1, 1) + timedelta(milliseconds=int(ms))
    variant %= 8
    if variant == 0:
        return f"{moment:%Y}-02-30 {moment:%H:%M:%S}"
    if variant == 1:
        return f"{moment:%d}/13/{moment:%Y %H:%M}"
    if variant == 2:
        return "not a date"
    if variant == 3:
        return f"{moment:%Y/%m/%d}"
    if variant == 4:
        return ""
    if variant == 5:
        return f"{moment:%Y-%m-%d}T25:{moment:%M:%S}Z"
    if variant == 6 and moment.day > 12:
        return f"{moment:%m/%d/%Y %H:%M}"  # month first: day > 12 makes the month impossible
    return str(int(ms) // 1000)  # epoch seconds


_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "đ": "d",
                       "ı": "i", "œ": "oe"})


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD)).lower()
    return "".join(ch for ch in folded if "a" <= ch <= "z") or "user"


# -- pools built with Faker, once per seed ---------------------------------------------------


@dataclass
class _Pool:
    """Strings per country, flat with offsets: values[offset[c] + i] for i < size[c]."""

    values: np.ndarray
    offset: np.ndarray
    size: np.ndarray

    def pick(self, country: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Pool-local indices for uniform draws `u` in [0, 1)."""
        return (u * self.size[country]).astype(np.int64)

    def get(self, country: np.ndarray, local: np.ndarray) -> np.ndarray:
        return self.values[self.offset[country] + local]


@dataclass
class _Pools:
    first: _Pool
    last: _Pool
    first_ascii: np.ndarray
    last_ascii: np.ndarray
    city: _Pool
    postcode: np.ndarray  # parallel to city.values
    phone: _Pool
    domain: _Pool
    brands: np.ndarray


def _unique(values) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _flat(lists: list[list[str]]) -> _Pool:
    sizes = np.array([len(x) for x in lists], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return _Pool(np.array([v for x in lists for v in x], dtype=object), offsets, sizes)


@lru_cache(maxsize=4)
def _pools(seed: int) -> _Pools:
    from faker import Faker

    firsts, lasts, cities, postcodes, phones, domains = [], [], [], [], [], []
    for i, country in enumerate(world.COUNTRIES):
        fake = Faker(country.faker_locale)
        fake.seed_instance((seed % (1 << 32)) * 31 + i)
        for provider in fake.providers:
            # some locales build their city list from a set, whose order changes from process to process
            if isinstance(getattr(provider, "cities", None), list):
                provider.cities = sorted(provider.cities)
        firsts.append(_unique(fake.first_name() for _ in range(260))[:160])
        lasts.append(_unique(fake.last_name() for _ in range(320))[:200])
        pairs = dict.fromkeys((fake.city(), fake.postcode()) for _ in range(180))
        city_list = _unique(city for city, _ in pairs)[:120]
        chosen = {}
        for city, postcode in pairs:
            chosen.setdefault(city, postcode)
        cities.append(city_list)
        postcodes.extend(chosen[city] for city in city_list)
        phones.append(_unique(fake.phone_number() for _ in range(150)))
        found = _unique(d for d in (fake.free_email_domain() for _ in range(30)) if _valid_domain(d))
        domains.append(found or ["example.com"])
    fake = Faker("en_US")
    fake.seed_instance((seed % (1 << 32)) * 31 + 99)
    suffixes = ("", "", "", " Labs", " & Co", " Works", " Studio", " Home", " Goods", " Supply")
    brand_names = _unique(
        f"{fake.last_name()}{suffixes[j % len(suffixes)]}" for j in range(400)
    )[:240]
    first, last = _flat(firsts), _flat(lasts)
    return _Pools(
        first=first,
        last=last,
        first_ascii=np.array([_ascii(v) for v in first.values], dtype=object),
        last_ascii=np.array([_ascii(v) for v in last.values], dtype=object),
        city=_flat(cities),
        postcode=np.array(postcodes, dtype=object),
        phone=_flat(phones),
        domain=_flat(domains),
        brands=np.array(brand_names, dtype=object),
    )


def _valid_domain(domain: str) -> bool:
    return all(part and part.replace("-", "").isalnum() and part.isascii() for part in domain.split(".")) \
        and "." in domain and domain.rsplit(".", 1)[1].isalpha()


# -- calendar --------------------------------------------------------------------------------


def _black_friday(year: int) -> date:
    november_first = date(year, 11, 1)
    first_thursday = november_first + timedelta(days=(3 - november_first.weekday()) % 7)
    return first_thursday + timedelta(days=22)


def _demand(day: date) -> float:
    """Relative order volume: weekly rhythm, months, Black Friday week, holidays."""
    factor = WEEKDAY_FACTOR[day.weekday()] * MONTH_FACTOR[day.month - 1]
    friday = _black_friday(day.year)
    offset = (day - friday).days
    factor *= {-4: 1.25, -3: 1.3, -2: 1.35, -1: 1.1, 0: 3.0, 1: 1.9, 2: 1.7, 3: 2.4, 4: 1.3}.get(offset, 1.0)
    if day.month == 12:
        factor *= {24: 0.7, 25: 0.45, 26: 1.35, 31: 0.75}.get(day.day, 1.1 if day.day <= 18 else 1.0)
    if day.month == 1:
        factor *= 0.6 if day.day == 1 else (1.15 if day.day <= 10 else 1.0)
    if day.month == 7 and 10 <= day.day <= 12:
        factor *= 1.6  # the summer sale
    return factor


def _coupon_active(code: str, day: date) -> bool:
    if code in ("SAVE10", "FREESHIP"):
        return True
    if code == "SPRING15":
        return day.month in (3, 4, 5)
    if code == "SUMMER20":
        return day.month in (6, 7, 8)
    if code == "BLACKFRIDAY25":
        return 0 <= (day - _black_friday(day.year)).days <= 3
    if code == "XMAS15":
        return day.month == 12 and day.day <= 22
    return False


# -- the world -------------------------------------------------------------------------------


@dataclass
class _Customers:
    """Every customer who ever signs up, in signup order (index i has id C-{i+1:06d})."""

    signup_ms: np.ndarray
    signup_day: np.ndarray
    country: np.ndarray
    first: np.ndarray  # pool-local indices
    last: np.ndarray
    email_style: np.ndarray
    email_num: np.ndarray
    domain: np.ndarray
    phone: np.ndarray  # -1: none given
    birth_day: np.ndarray  # NO_DAY: none given
    city: np.ndarray
    segment: np.ndarray
    opt_in: np.ndarray
    weight: np.ndarray
    first_order_ms: np.ndarray  # -1 unless the customer orders on the signup day
    change_day: np.ndarray  # (n, 2) day numbers, NO_DAY when none
    change_ms: np.ndarray
    change_kind: np.ndarray  # 0 email, 1 city, 2 segment, 3 opt-in
    new_domain: np.ndarray
    new_email_num: np.ndarray
    new_city: np.ndarray
    new_segment: np.ndarray
    cohort_days: np.ndarray  # distinct signup days, ascending
    cohort_start: np.ndarray  # first index of each cohort, plus n at the end
    cumulative_weight: np.ndarray  # length n + 1
    change_days: np.ndarray  # every (customer, slot) change, sorted by day ...
    change_who: np.ndarray  # ... and the customer of each

    def changed_on(self, day: int) -> np.ndarray:
        """Customers with a change on `day`, in index order."""
        lo, hi = np.searchsorted(self.change_days, [day, day + 1])
        return np.sort(self.change_who[lo:hi])


@dataclass
class _Catalog:
    """Every product ever listed, in launch order (index i has id P-{i+1:05d})."""

    product_id: np.ndarray
    sku: np.ndarray
    name: np.ndarray
    subcategory: np.ndarray
    brand: np.ndarray
    cost: np.ndarray  # cents
    price: np.ndarray  # (n, PRICE_CHANGES + 1) USD list price in cents per version
    launch_day: np.ndarray
    launch_ms: np.ndarray
    export_day: np.ndarray  # first day in the catalog export (after launch_day when late)
    export_ms: np.ndarray
    change_day: np.ndarray  # (n, PRICE_CHANGES) price changes
    change_ms: np.ndarray
    end_day: np.ndarray  # discontinued (is_active false) from this day on
    end_ms: np.ndarray
    weight: np.ndarray


@dataclass
class _DayOrders:
    """Everything about the orders placed on one day, including their future."""

    day: int
    ymd: str
    customer: np.ndarray  # customer index, -1 for a guest
    country: np.ndarray
    currency: np.ndarray
    channel: np.ndarray
    method: np.ndarray
    t0: np.ndarray  # ms
    fee_cents: np.ndarray  # 0: free shipping, written empty
    discount_cents: np.ndarray  # -1: no order discount
    coupon: np.ndarray  # index in COUPONS, -1 none
    is_test: np.ndarray
    late_header: np.ndarray
    # (n, 5): days after placement of placed, paid, shipped, delivered and cancelled/returned; -1 none
    event_offset: np.ndarray
    event_ms: np.ndarray
    final_status: np.ndarray
    line_order: np.ndarray
    line_number: np.ndarray
    line_product: np.ndarray
    line_quantity: np.ndarray
    line_price: np.ndarray  # cents, order currency
    line_discount: np.ndarray  # cents, -1 none
    pay_order: np.ndarray  # payment i has id PAY-<ymd>-<i + 1>
    pay_amount: np.ndarray
    pay_offset: np.ndarray  # (m, 3): created, captured, refunded; -1 none
    pay_ms: np.ndarray
    pay_status: np.ndarray  # status when created
    pay_ts: np.ndarray  # ms of creation

    order_events: tuple[np.ndarray, np.ndarray, np.ndarray] = ()  # (offset, order, slot) sorted by offset
    pay_events: tuple[np.ndarray, np.ndarray, np.ndarray] = ()
    # strings and rows rendered once and reused while the days that export them come
    # (see keep, text and _event_rows); _World.release drops them
    strings: dict[str, np.ndarray] = field(default_factory=dict)
    placed_rows: _Rows | None = None
    rendered: dict[tuple[str, bool], tuple[_Rows, int]] = field(default_factory=dict)

    def __post_init__(self):
        self.order_events = _events_by_offset(self.event_offset[:, 1:], slot_base=1)
        self.pay_events = _events_by_offset(self.pay_offset)

    @property
    def n(self) -> int:
        return len(self.t0)

    def keep(self, *names: str) -> None:
        for name in names:
            self.strings[name] = self._render(name, np.arange(self.n))

    def text(self, name: str, index: np.ndarray) -> np.ndarray:
        """Strings of the orders (or payments, for pay_id) at `index`."""
        full = self.strings.get(name)
        return full[index] if full is not None else self._render(name, index)

    def _render(self, name: str, index: np.ndarray) -> np.ndarray:
        if name == "order_id":
            return f"O-{self.ymd}-" + _padded(5, index)
        if name == "pay_id":
            return f"PAY-{self.ymd}-" + _padded(6, index)
        if name == "customer_id":
            customer = self.customer[index]
            return np.where(customer >= 0, "C-" + _padded(6, np.maximum(customer, 0)), "").astype(object)
        if name == "order_ts":
            return _format_ts(self.t0[index], NATIVE_TIMESTAMP["orders"])
        if name == "fee":
            fee = self.fee_cents[index]
            return np.where(fee > 0, _money(fee), "").astype(object)
        if name == "discount":
            return _money_or_blank(self.discount_cents[index])
        if name == "coupon":
            return np.array([c for c, _k, _v in COUPONS] + [""], dtype=object)[self.coupon[index]]
        raise ValueError(name)


def _events_by_offset(offsets: np.ndarray, slot_base: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, slots = np.nonzero(offsets >= 0)
    days = offsets[rows, slots]
    order = np.argsort(days, kind="stable")
    return days[order], rows[order], slots[order] + slot_base


@dataclass
class _Rows:
    """One entity's rows of one day, as string columns plus what dirt needs to know about them."""

    entity: str
    cols: dict[str, np.ndarray]
    first: np.ndarray  # first version of the business key
    ts: dict[str, np.ndarray] = field(default_factory=dict)  # ms of each timestamp column
    offset: np.ndarray | None = None  # local UTC offset (minutes) of the row's country
    country: np.ndarray | None = None
    currency: np.ndarray | None = None
    flag: np.ndarray | None = None  # value of the entity's boolean column
    is_test: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    order: np.ndarray | None = None  # the rows in file order, when that is not their order here

    @property
    def n(self) -> int:
        return len(self.first)

    def file_order(self) -> np.ndarray:
        return np.arange(self.n) if self.order is None else self.order

    def take(self, index: np.ndarray) -> _Rows:
        def pick(value):
            return None if value is None else value[index]

        return _Rows(self.entity, {k: v[index] for k, v in self.cols.items()}, self.first[index],
                     {k: v[index] for k, v in self.ts.items()}, pick(self.offset), pick(self.country),
                     pick(self.currency), pick(self.flag), pick(self.is_test),
                     {k: v[index] for k, v in self.extra.items()})


def _concat_rows(parts: list[tuple[_Rows, slice | np.ndarray]], entity: str) -> _Rows:
    """The selected rows of several row sets, one after the other."""
    parts = [(rows, pick) for rows, pick in parts if len(rows.first[pick])]
    if not parts:
        return _empty_rows(entity)
    head = parts[0][0]

    def cat(get):
        values = [get(rows) for rows, _pick in parts]
        if values[0] is None:
            return None
        return np.concatenate([value[pick] for value, (_rows, pick) in zip(values, parts, strict=True)])

    return _Rows(entity, {k: cat(lambda r, k=k: r.cols[k]) for k in head.cols}, cat(lambda r: r.first),
                 {k: cat(lambda r, k=k: r.ts[k]) for k in head.ts}, cat(lambda r: r.offset),
                 cat(lambda r: r.country), cat(lambda r: r.currency), cat(lambda r: r.flag),
                 cat(lambda r: r.is_test), {k: cat(lambda r, k=k: r.extra[k]) for k in head.extra})


_EXTRA_COLUMNS = {
    "orders": ("late_header",),
    "order_items": ("quantity", "price", "discount", "order_index", "late_product", "late_order_header"),
}


def _empty_rows(entity: str) -> _Rows:
    empty_i, empty_b = np.empty(0, dtype=np.int64), np.empty(0, dtype=bool)
    return _Rows(entity, {c: np.empty(0, dtype=object) for c in COLUMNS[entity]}, empty_b,
                 {c: empty_i for c in TIMESTAMP_COLUMNS[entity]}, empty_i, empty_i, empty_i, empty_b, empty_b,
                 {k: empty_i for k in _EXTRA_COLUMNS.get(entity, ())})


class _World:
    """The simulated retailer from its origin to `last_day` (day numbers)."""

    def __init__(self, seed: int, origin: int, last_day: int, orders_per_day: int, dirty_rate: float):
        self.seed, self.origin, self.last_day = seed, origin, last_day
        self.opd, self.rate = orders_per_day, dirty_rate
        self.pools = _pools(seed)
        self.units_per_usd = np.array([world.CURRENCIES[CURRENCY_CODES.index(c.currency)].units_per_usd
                                       for c in world.COUNTRIES])
        self.country_currency = np.array([CURRENCY_CODES.index(c.currency) for c in world.COUNTRIES])
        self.country_offset = np.array([c.utc_offset_minutes for c in world.COUNTRIES])
        self.country_share = np.array([c.order_share for c in world.COUNTRIES])
        self.country_share /= self.country_share.sum()
        self.country_region = np.array([0 if c.region == "north_america" else 1 for c in world.COUNTRIES])
        self.fee_cents = np.array([round(float(c.shipping_fee) * 100) for c in world.COUNTRIES])
        self.free_from = np.array([c.free_shipping_from * 100 for c in world.COUNTRIES])
        self.sub_return = np.array([s.return_rate for s in SUBCATEGORIES])
        self._counts: dict[int, tuple[int, int, int]] = {}
        self.customers = self._build_customers()
        self.catalog = self._build_catalog()
        self._orders: dict[int, _DayOrders] = {}

    # ---- volumes

    def counts(self, day: int) -> tuple[int, int, int]:
        """(orders placed, orders by customers who sign up that day, sign-ups without an order)."""
        if day not in self._counts:
            rng = _rng(self.seed, S_COUNTS, day)
            growth = (1 + YEARLY_GROWTH) ** ((day - self.origin) / 365.0)
            mean = self.opd * _demand(_date(day)) * growth * math.exp(rng.normal(0, 0.05))
            orders = int(rng.poisson(mean))
            month = _date(day).month
            share = NEW_CUSTOMER_SHARE + (0.08 if month in (11, 12) else 0.0)
            new_buyers = int(rng.binomial(orders, share))
            browsers = int(rng.poisson(0.08 * self.opd * WEEKDAY_FACTOR[_date(day).weekday()]))
            self._counts[day] = (orders, new_buyers, browsers)
        return self._counts[day]

    # ---- customers

    def _customer_batch(self, rng: np.random.Generator, n: int, days: np.ndarray, buyers: int) -> dict:
        pools = self.pools
        country = rng.choice(len(COUNTRY_CODES), n, p=self.country_share).astype(np.int64)
        sec = self._order_seconds(rng, country)
        delay = rng.integers(120, 1800, n)
        first_order_ms = np.where(np.arange(n) < buyers, days * DAY_MS + sec * 1000, -1)
        signup_sec = np.where(np.arange(n) < buyers, sec - delay % (sec + 1), rng.integers(0, 86400, n))
        weight = np.minimum(rng.pareto(1.5, n) + 1.0, 30.0)
        segment = np.where(rng.random(n) < 0.08, 1, 0)
        segment = np.where((weight > 6) & (rng.random(n) < 0.6), 2, segment)
        weight = np.where(segment == 2, weight * 1.5, weight)
        age_days = rng.integers(18 * 365, 80 * 365, n)
        change_gap = 20 + rng.exponential(200, (n, 2)).astype(np.int64)
        has_change = rng.random((n, 2)) < np.array([0.30, 0.30])
        has_change[:, 1] &= has_change[:, 0]
        change_day = np.where(has_change, days[:, None] + np.cumsum(change_gap, axis=1), NO_DAY)
        change_sec = rng.integers(0, 86400, (n, 2))
        kind0 = rng.choice(4, n, p=[0.35, 0.30, 0.15, 0.20])
        kind1 = (kind0 + 1 + rng.integers(0, 3, n)) % 4
        return {
            "signup_day": days,
            "signup_ms": days * DAY_MS + signup_sec * 1000,
            "country": country,
            "first": pools.first.pick(country, rng.random(n)),
            "last": pools.last.pick(country, rng.random(n)),
            "email_style": rng.integers(0, 4, n),
            "email_num": np.where(rng.random(n) < 0.45, rng.integers(1, 1000, n), 0),
            "domain": pools.domain.pick(country, rng.random(n)),
            "phone": np.where(rng.random(n) < 0.12, -1, pools.phone.pick(country, rng.random(n))),
            "birth_day": np.where(rng.random(n) < 0.22, NO_DAY, days - age_days),
            "city": pools.city.pick(country, rng.random(n)),
            "segment": segment,
            "opt_in": rng.random(n) < 0.55,
            "weight": weight,
            "first_order_ms": first_order_ms,
            "change_day": np.where(change_day >= NO_DAY, NO_DAY, change_day),
            "change_ms": np.where(change_day >= NO_DAY, 0, change_day * DAY_MS + change_sec * 1000),
            "change_kind": np.stack([kind0, kind1], axis=1),
            "new_domain": pools.domain.pick(country, rng.random(n)),
            "new_email_num": rng.integers(1, 1000, n),
            "new_city": pools.city.pick(country, rng.random(n)),
            "new_segment": np.where(segment == 0, np.where(rng.random(n) < 0.5, 1, 2), 0),
        }

    def _build_customers(self) -> _Customers:
        base_n = min(30 * self.opd, 250_000)
        rng = _rng(self.seed, S_BASE_CUSTOMERS, self.origin, self.opd)
        base_days = np.sort(self.origin - rng.integers(1, BASE_CUSTOMER_DAYS + 1, base_n))
        batches = [self._customer_batch(rng, base_n, base_days, 0)]
        for day in range(self.origin, self.last_day + 1):
            _orders, buyers, browsers = self.counts(day)
            rng = _rng(self.seed, S_CUSTOMERS, day)
            n = buyers + browsers
            batches.append(self._customer_batch(rng, n, np.full(n, day, dtype=np.int64), buyers))
        merged = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        cohort_days, cohort_start = np.unique(merged["signup_day"], return_index=True)
        n_total = len(merged["signup_day"])
        cumulative = np.concatenate([[0.0], np.cumsum(merged["weight"])])
        flat_days = merged["change_day"].ravel()
        by_day = np.argsort(flat_days, kind="stable")
        return _Customers(**merged, cohort_days=cohort_days,
                          cohort_start=np.concatenate([cohort_start, [n_total]]),
                          cumulative_weight=cumulative, change_days=flat_days[by_day], change_who=by_day // 2)

    def _order_seconds(self, rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
        """UTC second of the day of orders placed in `country`, following the local hour profile."""
        cumulative = np.cumsum(HOUR_WEIGHTS) / HOUR_WEIGHTS.sum()
        hour = np.minimum(np.searchsorted(cumulative, rng.random(len(country)), side="right"), 23)
        local = hour * 3600 + rng.integers(0, 3600, len(country))
        return (local - self.country_offset[country] * 60) % 86400

    def customer_state(self, index: np.ndarray, day: int) -> dict[str, np.ndarray]:
        """Attributes of customers as of the end of `day` (changes up to that day applied)."""
        c = self.customers
        state = {"domain": c.domain[index].copy(), "email_num": c.email_num[index].copy(),
                 "city": c.city[index].copy(), "segment": c.segment[index].copy(),
                 "opt_in": c.opt_in[index].copy(), "updated_ms": c.signup_ms[index].copy()}
        for slot in range(2):
            applied = c.change_day[index, slot] <= day
            kind = c.change_kind[index, slot]
            email = applied & (kind == 0)
            state["domain"][email] = c.new_domain[index][email]
            state["email_num"][email] = c.new_email_num[index][email]
            city = applied & (kind == 1)
            state["city"][city] = c.new_city[index][city]
            segment = applied & (kind == 2)
            state["segment"][segment] = c.new_segment[index][segment]
            opt = applied & (kind == 3)
            state["opt_in"][opt] = ~state["opt_in"][opt]
            state["updated_ms"] = np.where(applied, np.maximum(state["updated_ms"], c.change_ms[index, slot]),
                                           state["updated_ms"])
        return state

    def _pick_customers(self, rng: np.random.Generator, day: int, k: int) -> np.ndarray:
        """Existing customers (signed up before `day`) for `k` orders: recent and heavy buyers first."""
        c = self.customers
        n_cohorts = int(np.searchsorted(c.cohort_days, day, side="left"))
        if k == 0 or n_cohorts == 0:
            return np.full(k, -1, dtype=np.int64)
        starts, ends = c.cohort_start[:n_cohorts], c.cohort_start[1:n_cohorts + 1]
        mass = c.cumulative_weight[ends] - c.cumulative_weight[starts]
        age = (day - c.cohort_days[:n_cohorts]).astype(np.float64)
        recency = 0.22 + 0.50 * np.exp(-age / 30.0) + 0.28 * np.exp(-age / 400.0)
        cumulative = np.cumsum(mass * recency)
        cohort = np.minimum(np.searchsorted(cumulative, rng.random(k) * cumulative[-1], side="right"),
                            n_cohorts - 1)
        low = c.cumulative_weight[starts[cohort]]
        target = low + rng.random(k) * mass[cohort]
        by_target = np.argsort(target, kind="stable")  # sorted lookups stay in cache
        index = np.empty(k, dtype=np.int64)
        index[by_target] = np.searchsorted(c.cumulative_weight, target[by_target], side="right") - 1
        return np.clip(index, starts[cohort], ends[cohort] - 1)

    # ---- catalog

    def _product_batch(self, rng: np.random.Generator, n: int, launch_days: np.ndarray, base: bool) -> dict:
        n_sub = len(SUBCATEGORIES)
        mid_price = np.array([(s.price_low_usd + s.price_high_usd) / 2.0 for s in SUBCATEGORIES])
        sub_weight = 1.0 / np.sqrt(mid_price / 20.0 + 1)
        sub_weight *= np.array([1.4 if s.category in ("fashion", "beauty") else 1.0 for s in SUBCATEGORIES])
        subcategory = rng.choice(n_sub, n, p=sub_weight / sub_weight.sum())
        low = np.array([s.price_low_usd for s in SUBCATEGORIES])[subcategory]
        high = np.array([s.price_high_usd for s in SUBCATEGORIES])[subcategory]
        usd = low * (high / low) ** rng.beta(1.3, 2.6, n)
        price0 = np.maximum(np.ceil(usd) * 100 - 1, 99).astype(np.int64)
        factors = rng.uniform(0.85, 1.12, (n, PRICE_CHANGES))
        prices = [price0]
        for change in range(PRICE_CHANGES):
            changed = np.ceil(prices[-1] * factors[:, change] / 100) * 100 - 1
            prices.append(np.maximum(changed, 99).astype(np.int64))
        margin = np.array([s.gross_margin for s in SUBCATEGORIES])[subcategory] * rng.uniform(0.8, 1.2, n)
        cost = np.round(price0 * (1 - margin)).astype(np.int64)
        launch_sec = rng.integers(6 * 3600, 20 * 3600, n)
        late = (rng.random(n) < min(0.5, 10 * self.rate)) & (not base)
        export_day = launch_days + np.where(late, rng.integers(1, 5, n), 0)
        export_sec = np.where(late, rng.integers(6 * 3600, 20 * 3600, n), launch_sec)
        # price changes, then perhaps the end of the product (is_active false)
        gaps = 20 + rng.exponential(90, (n, PRICE_CHANGES + 1)).astype(np.int64)
        if base:  # the catalog as it stood at the origin changes from the first days on
            gaps[:, 0] = rng.integers(1, 120, n)
        steps = np.cumsum(gaps, axis=1)
        has = rng.random((n, PRICE_CHANGES + 1)) < np.array([0.8, 0.6, 0.4, 0.12])
        for change in range(1, PRICE_CHANGES):
            has[:, change] &= has[:, change - 1]
        start = np.maximum(export_day, self.origin) if base else export_day
        event_day = np.where(has, start[:, None] + steps, NO_DAY)
        event_sec = rng.integers(0, 86400, (n, PRICE_CHANGES + 1))
        event_ms = np.where(event_day >= NO_DAY, 0, event_day * DAY_MS + event_sec * 1000)
        brand = (np.array([sorted(CATEGORY_SKU).index(s.category) for s in SUBCATEGORIES])[subcategory] * 29
                 + rng.integers(0, 60, n)) % len(self.pools.brands)
        adjective = rng.integers(0, len(ADJECTIVES), n)
        noun = rng.integers(0, 64, n)
        model = rng.integers(0, 1000, n)
        variant = rng.random(n)
        colour = rng.integers(0, len(COLOURS), n)
        return {
            "subcategory": subcategory, "brand": brand, "cost": cost,
            "price": np.stack(prices, axis=1),
            "launch_day": launch_days, "launch_ms": launch_days * DAY_MS + launch_sec * 1000,
            "export_day": export_day, "export_ms": export_day * DAY_MS + export_sec * 1000,
            "change_day": event_day[:, :PRICE_CHANGES], "change_ms": event_ms[:, :PRICE_CHANGES],
            "end_day": event_day[:, PRICE_CHANGES], "end_ms": event_ms[:, PRICE_CHANGES],
            "weight": rng.lognormal(0.0, 1.1, n) * sub_weight[subcategory] / sub_weight.mean(),
            "_name": (adjective, noun, model, variant, colour),
        }

    def _build_catalog(self) -> _Catalog:
        base_n = min(800 + self.opd // 2, 4000)
        rng = _rng(self.seed, S_BASE_PRODUCTS, self.origin, self.opd)
        launched = np.sort(self.origin - rng.integers(1, 720, base_n))
        batches = [self._product_batch(rng, base_n, launched, True)]
        for day in range(self.origin, self.last_day + 1):
            rng = _rng(self.seed, S_PRODUCTS, day)
            weekday = _date(day).weekday()
            n = int(rng.poisson(max(1.0, self.opd / 400) * (1.4 if weekday < 5 else 0.0)))
            batches.append(self._product_batch(rng, n, np.full(n, day, dtype=np.int64), False))
        names = [self._product_names(b) for b in batches]
        merged = {k: np.concatenate([b[k] for b in batches]) for k in batches[0] if k != "_name"}
        n_total = len(merged["subcategory"])
        index = np.arange(n_total)
        categories = [SUBCATEGORIES[s].category for s in merged["subcategory"].tolist()]
        sku_number = (index * 2654435761 + (self.seed % 65536) * 977) % (1 << 24)
        return _Catalog(
            product_id=np.array([f"P-{i + 1:05d}" for i in range(n_total)], dtype=object),
            sku=np.array([f"SKU-{CATEGORY_SKU[cat]}-{num:06X}"
                          for cat, num in zip(categories, sku_number.tolist(), strict=True)], dtype=object),
            name=np.concatenate(names) if names else np.empty(0, dtype=object),
            **merged,
        )

    def _product_names(self, batch: dict) -> np.ndarray:
        """Catalog titles: brand, line and noun, then a model code, a colour or a pack size where
        such things exist. A few titles carry a comma, a double quote (screen sizes) or a line
        break, as real catalog exports do."""
        adjective, noun, model, variant, colour = batch["_name"]
        names = []
        for i, sub in enumerate(batch["subcategory"].tolist()):
            spec = SUBCATEGORIES[sub]
            brand = self.pools.brands[batch["brand"][i]]
            nouns = NOUNS[spec.subcategory]
            name = f"{brand} {ADJECTIVES[adjective[i]]} {nouns[noun[i] % len(nouns)]}"
            coloured = spec.category in COLOURED_CATEGORIES
            if spec.subcategory == "monitors":
                name += f' {(24, 27, 32, 34)[model[i] % 4]}"'
            elif model[i] % 3 == 0 and spec.category in MODEL_CATEGORIES:
                name += f" {chr(65 + model[i] % 26)}{model[i] // 26 + 1}0"
            v = variant[i]
            if v < 0.22 and coloured:
                name += f", {COLOURS[colour[i]]}"
            elif v < 0.30 and not coloured:
                name += f", {(2, 3, 6, 12)[colour[i] % 4]}-Pack"
            elif 0.30 <= v < 0.31:
                name += "\nGift Edition"
            names.append(name)
        return np.array(names, dtype=object)

    def product_version(self, product: np.ndarray, day: int) -> np.ndarray:
        cat = self.catalog
        return (cat.change_day[product] <= day).sum(axis=1)

    # ---- orders

    def day_orders(self, day: int) -> _DayOrders:
        if day not in self._orders:
            self._orders[day] = self._build_orders(day)
            for old in [d for d in self._orders if d < day - LOOKBACK_DAYS]:
                del self._orders[old]
        return self._orders[day]

    def release(self, day: int) -> None:
        """Drop rendered rows that no day after `day` exports (days are generated in order)."""
        for placed, o in self._orders.items():
            if day - placed >= 1:
                o.placed_rows = None
            if day - placed >= NEAR_DAYS:
                o.rendered.pop(("orders", True), None)
                o.rendered.pop(("payments", True), None)
                o.strings.clear()

    def _build_orders(self, day: int) -> _DayOrders:
        rng = _rng(self.seed, S_ORDERS, day)
        today = _date(day)
        n, buyers, _browsers = self.counts(day)
        cust = self.customers
        first_new = int(np.searchsorted(cust.signup_day, day, side="left"))

        # who orders, from where, when
        rest = n - buyers
        guest = rng.random(rest) < GUEST_SHARE
        existing = self._pick_customers(rng, day, rest)
        customer = np.concatenate([np.arange(first_new, first_new + buyers), np.where(guest, -1, existing)])
        known = customer >= 0
        country = np.where(known, cust.country[np.maximum(customer, 0)],
                           rng.choice(len(COUNTRY_CODES), n, p=self.country_share))
        moved = rng.random(n) < 0.02
        same_region = np.flatnonzero(self.country_region == 1)
        country = np.where(moved & (self.country_region[country] == 1), rng.choice(same_region, n), country)
        t0 = np.concatenate([cust.first_order_ms[first_new:first_new + buyers],
                             day * DAY_MS + self._order_seconds(rng, country[buyers:]) * 1000])
        order = np.argsort(t0, kind="stable")
        customer, country, t0 = customer[order], country[order], t0[order]
        is_new = (np.arange(n) < buyers)[order]
        known = customer >= 0
        segment = np.where(known, cust.segment[np.maximum(customer, 0)], 0)
        currency = self.country_currency[country]
        weekend = today.weekday() >= 5
        channel = np.searchsorted(np.cumsum(CHANNEL_SHARE[weekend]), rng.random(n) * 0.999999, side="right")
        method_u = rng.random(n)
        method = (method_u[:, None] > np.cumsum(METHOD_MIX[country], axis=1)).sum(axis=1)
        method = np.minimum(method, len(METHOD_CODES) - 1)
        is_test = (rng.random(n) < self.rate) if self.rate > 0 else np.zeros(n, dtype=bool)
        late_header = (rng.random(n) < self.rate) & ~is_test if self.rate > 0 else np.zeros(n, dtype=bool)

        # lines
        n_lines = np.minimum(1 + rng.poisson(1.5, n), 9)
        line_order = np.repeat(np.arange(n), n_lines)
        starts = np.cumsum(n_lines) - n_lines  # first line of each order; empty on a day without orders
        line_number = np.arange(len(line_order)) - starts[line_order] + 1
        product = self._pick_products(rng, day, line_order, line_number)
        n_lines_total = len(line_order)
        sub = self.catalog.subcategory[product]
        version = self.product_version(product, day)
        usd = self.catalog.price[product, version]
        local = usd * self.units_per_usd[country[line_order]]
        price = np.where(local >= 1000, np.ceil(local / 100) * 100 - 1, np.ceil(local / 10) * 10 - 1)
        price = np.maximum(price, 49).astype(np.int64)
        cheap = np.array([s.price_high_usd <= 80 for s in SUBCATEGORIES])[sub]
        quantity = np.minimum(rng.geometric(np.where(cheap, 0.6, 0.88), n_lines_total), 12)
        business = segment[line_order] == 1
        quantity = np.where(business, quantity * rng.integers(1, 6, n_lines_total), quantity).astype(np.int64)
        gross = quantity * price
        promo = 0.10 + (0.15 if abs((today - _black_friday(today.year)).days - 1.5) <= 2.5 else 0.0)
        pct = rng.choice(np.array([5, 10, 15, 20, 25, 30]), n_lines_total)
        discounted = rng.random(n_lines_total) < promo
        line_discount = np.where(discounted, np.round(gross * pct / 100), -1).astype(np.int64)
        subtotal = np.bincount(line_order, weights=gross - np.maximum(line_discount, 0), minlength=n)
        subtotal = np.round(subtotal).astype(np.int64)

        # coupons, shipping, totals
        active = [i for i, (code, _k, _v) in enumerate(COUPONS)
                  if code != "WELCOME10" and _coupon_active(code, today)]
        coupon_rate = 0.35 if "BLACKFRIDAY25" in [COUPONS[i][0] for i in active] else 0.06
        coupon = np.where(rng.random(n) < coupon_rate, np.array(active)[rng.integers(0, len(active), n)], -1)
        coupon = np.where(is_new & (rng.random(n) < 0.3), 0, coupon)
        kind = np.array([k for _c, k, _v in COUPONS] + ["none"])[coupon]
        value = np.array([v for _c, _k, v in COUPONS] + [0])[coupon]
        units = self.units_per_usd[country]
        discount = np.where(kind == "pct", np.round(subtotal * value / 100), -1)
        discount = np.where(kind == "fixed", np.minimum(np.round(value * units) * 100, subtotal), discount)
        discount = discount.astype(np.int64)
        free = (subtotal >= self.free_from[country]) | (kind == "ship") | (segment == 2)
        fee = np.where(free, 0, self.fee_cents[country])
        total = subtotal - np.maximum(discount, 0) + fee

        # lives of the orders: event day offsets and times
        offset = np.full((n, 5), -1, dtype=np.int64)
        offset[:, 0] = 0
        final = np.full(n, CANCELLED, dtype=np.int64)
        prepaid = np.isin(method, (CARD, PAYPAL, GIFT))
        fail_all = prepaid & (rng.random(n) < 0.025)
        n_failed = np.where(fail_all, 1 + (rng.random(n) < 0.3),
                            np.where(prepaid, rng.choice(3, n, p=[0.93, 0.06, 0.01]), 0))
        bank_delay = rng.integers(1, 5, n)
        unpaid = (method == BANK) & (rng.random(n) < 0.08)
        paid_at = np.where(prepaid, 1, np.where(method == BANK, bank_delay, -1))
        paid_at = np.where(fail_all | unpaid, -1, paid_at)
        cancel_after_pay = (paid_at > 0) & (rng.random(n) < 0.015)
        ship_gap = rng.integers(1, 3, n)
        transit = rng.integers(1, 6, n) + np.where(self.country_region[country] == 0, 1, 0)
        shipped_at = np.where(method == COD, ship_gap, np.where(paid_at > 0, paid_at + ship_gap, -1))
        shipped_at = np.where(cancel_after_pay, -1, shipped_at)
        refused = (method == COD) & (rng.random(n) < 0.05)
        delivered_at = np.where((shipped_at > 0) & ~refused, shipped_at + transit, -1)
        first_sub = sub[starts]
        returned = (delivered_at > 0) & (rng.random(n) < self.sub_return[first_sub] * 1.3)
        returned_at = np.where(returned, delivered_at + rng.integers(3, 21, n), -1)
        offset[:, 1] = np.where(method == COD, -1, paid_at)
        offset[:, 2] = shipped_at
        offset[:, 3] = delivered_at
        cancelled_at = np.where(refused, shipped_at + transit, -1)
        cancelled_at = np.where(cancel_after_pay, paid_at + 1, cancelled_at)
        cancelled_at = np.where(unpaid, 7, cancelled_at)
        cancelled_at = np.where(fail_all, 1, cancelled_at)
        offset[:, 4] = np.where(returned, returned_at, cancelled_at)
        final = np.where(returned, RETURNED, final)
        event_sec = rng.integers(5 * 3600, 22 * 3600, (n, 5))
        event_ms = np.where(offset >= 0, (day + offset) * DAY_MS + event_sec * 1000, 0)
        event_ms[:, 0] = t0

        # payments: failed attempts, then the one that goes through
        pay_order, pay_status, pay_offset, pay_ms = [], [], [], []
        attempt_gap = rng.integers(20_000, 120_000, n)
        last_ms = day * DAY_MS + DAY_MS - 1000  # + up to 999 ms of jitter stays inside the day
        for attempt in range(3):
            has = n_failed > attempt
            idx = np.flatnonzero(has)
            pay_order.append(idx)
            pay_status.append(np.full(len(idx), FAILED))
            created = np.minimum(t0[idx] + (attempt + 1) * attempt_gap[idx], last_ms)
            none = np.full(len(idx), -1, dtype=np.int64)
            pay_offset.append(np.stack([none + 1, none, none], axis=1))
            pay_ms.append(np.stack([created, none + 1, none + 1], axis=1))
        success = np.flatnonzero((prepaid & ~fail_all) | ((method == BANK) & (paid_at > 0)) |
                                 ((method == COD) & (delivered_at > 0)))
        m = method[success]
        authorized = np.isin(m, (CARD, PAYPAL, GIFT))
        created_offset = np.where(authorized, 0, np.where(m == BANK, paid_at[success], delivered_at[success]))
        created_ms = np.where(
            authorized,
            np.minimum(t0[success] + (n_failed[success] + 1) * attempt_gap[success], last_ms),
            np.where(m == BANK, event_ms[success, 1], event_ms[success, 3]),
        )
        capture_offset = np.where(authorized, paid_at[success], -1)
        capture_ms = np.where(authorized, event_ms[success, 1], 0)
        refunded = returned[success] | cancel_after_pay[success]
        refund_offset = np.where(refunded, offset[success, 4], -1)
        refund_ms = np.where(refunded, event_ms[success, 4], 0)
        pay_order.append(success)
        pay_status.append(np.where(authorized, AUTHORIZED, CAPTURED))
        pay_offset.append(np.stack([created_offset, capture_offset, refund_offset], axis=1))
        pay_ms.append(np.stack([created_ms, capture_ms, refund_ms], axis=1))
        p_order = np.concatenate(pay_order)
        p_offset = np.concatenate(pay_offset)
        p_created_ms = np.concatenate(pay_ms)[:, 0]
        ms_jitter = rng.integers(0, 1000, len(p_order))
        p_ms = np.concatenate(pay_ms) + np.where(np.concatenate(pay_offset) >= 0, ms_jitter[:, None], 0)
        p_ts = p_created_ms + ms_jitter
        p_sort = np.lexsort((p_ts, p_order))
        orders = _DayOrders(
            day=day, ymd=today.strftime("%Y%m%d"), customer=customer, country=country, currency=currency,
            channel=channel, method=method, t0=t0, fee_cents=fee, discount_cents=discount, coupon=coupon,
            is_test=is_test, late_header=late_header, event_offset=offset, event_ms=event_ms,
            final_status=final,
            line_order=line_order, line_number=line_number, line_product=product, line_quantity=quantity,
            line_price=price, line_discount=line_discount,
            pay_order=p_order[p_sort], pay_amount=total[p_order[p_sort]], pay_offset=p_offset[p_sort],
            pay_ms=p_ms[p_sort], pay_status=np.concatenate(pay_status)[p_sort], pay_ts=p_ts[p_sort],
        )
        orders.keep("order_id", "customer_id", "order_ts", "fee", "discount", "coupon")
        return orders

    def _pick_products(self, rng: np.random.Generator, day: int, line_order: np.ndarray,
                       line_number: np.ndarray) -> np.ndarray:
        """Products of the order lines: popular ones more often, later lines often from the same shelf."""
        cat = self.catalog
        listed = int(np.searchsorted(cat.launch_day, day, side="right"))
        month = _date(day).month - 1
        season = np.array([CATEGORY_SEASON.get(s.category, (1.0,) * 12)[month] for s in SUBCATEGORIES])
        age = (day - cat.launch_day[:listed]).astype(np.float64)
        weight = cat.weight[:listed] * season[cat.subcategory[:listed]] * (1 + 3.0 * np.exp(-age / 14.0))
        weight = np.where(cat.end_day[:listed] <= day, 0.0, weight)
        cumulative = np.cumsum(weight)
        m = len(line_order)
        product = np.searchsorted(cumulative, rng.random(m) * cumulative[-1], side="right")
        product = np.minimum(product, listed - 1)
        # later lines: 40% from the subcategory of the first line
        by_shelf = np.argsort(cat.subcategory[:listed], kind="stable")
        shelf_cumulative = np.cumsum(weight[by_shelf])
        shelf_of = cat.subcategory[:listed][by_shelf]
        bounds = np.searchsorted(shelf_of, np.arange(len(SUBCATEGORIES) + 1), side="left")
        first_line = np.flatnonzero(line_number == 1)  # empty too when the day has no orders
        first_product = product[first_line][line_order]
        shelf = cat.subcategory[first_product]
        same = (line_number > 1) & (rng.random(m) < 0.4)
        lo = np.where(bounds[shelf] > 0, shelf_cumulative[np.maximum(bounds[shelf] - 1, 0)], 0.0)
        hi = shelf_cumulative[np.maximum(bounds[shelf + 1] - 1, 0)]
        target = lo + rng.random(m) * (hi - lo)
        pick = np.minimum(np.searchsorted(shelf_cumulative, target, side="right"), listed - 1)
        product = np.where(same & (hi > lo), by_shelf[pick], product)
        # the same product twice in a row becomes a popular one instead
        same_order = line_order[1:] == line_order[:-1]
        repeat = np.concatenate([[False], (product[1:] == product[:-1]) & same_order])
        again = np.searchsorted(cumulative, rng.random(m) * cumulative[-1], side="right")
        again = np.minimum(again, listed - 1)
        return np.where(repeat, again, product).astype(np.int64)


# -- rows of a day -------------------------------------------------------------------------


def _customer_rows(w: _World, day: int) -> _Rows:
    c, pools = w.customers, w.pools
    parts: list[tuple[np.ndarray, dict, np.ndarray]] = []
    if day == w.origin:
        base = np.flatnonzero(c.signup_day < w.origin)
        parts.append((base, w.customer_state(base, day - 1), np.ones(len(base), dtype=bool)))
    new = np.flatnonzero(c.signup_day == day)
    parts.append((new, w.customer_state(new, day), np.ones(len(new), dtype=bool)))
    changed = c.changed_on(day)
    changed = changed[c.signup_day[changed] < day]
    state = w.customer_state(changed, day)
    slot = np.argmax(c.change_day[changed] == day, axis=1)
    state["updated_ms"] = c.change_ms[changed, slot]
    parts.append((changed, state, np.zeros(len(changed), dtype=bool)))
    index = np.concatenate([p[0] for p in parts])
    state = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    first = np.concatenate([p[2] for p in parts])
    order = np.argsort(state["updated_ms"], kind="stable")
    index, first = index[order], first[order]
    state = {k: v[order] for k, v in state.items()}

    country = c.country[index]
    first_name = pools.first.get(country, c.first[index])
    last_name = pools.last.get(country, c.last[index])
    fa = pools.first_ascii[pools.first.offset[country] + c.first[index]]
    la = pools.last_ascii[pools.last.offset[country] + c.last[index]]
    domain = pools.domain.get(country, state["domain"])
    emails = []
    for style, f, last, num, dom in zip(c.email_style[index].tolist(), fa.tolist(), la.tolist(),
                                        state["email_num"].tolist(), domain.tolist(), strict=True):
        local = (f"{f}.{last}", f"{f}{last}", f"{f[0]}.{last}", f"{f}_{last}")[style]
        emails.append(f"{local}{num if num else ''}@{dom}")
    phone_idx = c.phone[index]
    phone = pools.phone.get(country, np.maximum(phone_idx, 0))
    phone[phone_idx < 0] = ""
    birth = c.birth_day[index]
    birth_str = _day_strings(np.where(birth == NO_DAY, 0, birth))
    birth_str[birth == NO_DAY] = ""
    city_idx = pools.city.offset[country] + state["city"]
    style = NATIVE_TIMESTAMP["customers"]
    signup_ms, updated_ms = c.signup_ms[index], state["updated_ms"]
    opt_in = state["opt_in"]
    cols = {
        "customer_id": "C-" + _padded(6, index),
        "first_name": first_name,
        "last_name": last_name,
        "email": np.array(emails, dtype=object),
        "phone": phone,
        "birth_date": birth_str,
        "signup_at": _format_ts(signup_ms, style),
        "country": np.array(COUNTRY_CODES, dtype=object)[country],
        "city": pools.city.values[city_idx],
        "postal_code": pools.postcode[city_idx],
        "segment": np.array(world.SEGMENTS, dtype=object)[state["segment"]],
        "marketing_opt_in": np.array(NATIVE_BOOLEAN["customers"], dtype=object)[opt_in.astype(np.int64)],
        "updated_at": _format_ts(updated_ms, style),
    }
    return _Rows("customers", cols, first, {"signup_at": signup_ms, "updated_at": updated_ms},
                 offset=w.country_offset[country], country=country,
                 currency=np.zeros(len(index), dtype=np.int64),
                 flag=opt_in, is_test=np.zeros(len(index), dtype=bool))


def _product_rows(w: _World, day: int) -> _Rows:
    cat = w.catalog
    index_parts, ms_parts, first_parts, version_parts, active_parts = [], [], [], [], []

    def add(index, ms, first, version, active):
        index_parts.append(index)
        ms_parts.append(ms)
        first_parts.append(np.full(len(index), first))
        version_parts.append(version)
        active_parts.append(np.full(len(index), active))

    if day == w.origin:
        base = np.flatnonzero(cat.launch_day < w.origin)
        add(base, cat.launch_ms[base], True, np.zeros(len(base), dtype=np.int64), True)
    new = np.flatnonzero((cat.export_day == day) & (cat.launch_day >= w.origin))
    add(new, cat.export_ms[new], True, w.product_version(new, day), True)
    for slot in range(PRICE_CHANGES):
        changed = np.flatnonzero(cat.change_day[:, slot] == day)
        add(changed, cat.change_ms[changed, slot], False, w.product_version(changed, day), True)
    ended = np.flatnonzero(cat.end_day == day)
    add(ended, cat.end_ms[ended], False, w.product_version(ended, day), False)
    index = np.concatenate(index_parts)
    ms = np.concatenate(ms_parts)
    first = np.concatenate(first_parts)
    version = np.concatenate(version_parts)
    active = np.concatenate(active_parts).astype(bool)
    order = np.argsort(ms, kind="stable")
    index, ms, first, version, active = index[order], ms[order], first[order], version[order], active[order]
    subs = cat.subcategory[index]
    cols = {
        "product_id": cat.product_id[index],
        "sku": cat.sku[index],
        "product_name": cat.name[index],
        "category": np.array([s.category for s in SUBCATEGORIES], dtype=object)[subs],
        "subcategory": np.array([s.subcategory for s in SUBCATEGORIES], dtype=object)[subs],
        "brand": w.pools.brands[cat.brand[index]],
        "unit_cost_usd": _money(cat.cost[index]),
        "list_price": _money(cat.price[index, version]),
        "currency": np.full(len(index), "USD", dtype=object),
        "is_active": np.array(NATIVE_BOOLEAN["products"], dtype=object)[active.astype(np.int64)],
        "updated_at": _format_ts(ms, NATIVE_TIMESTAMP["products"]),
    }
    n = len(index)
    rng = _rng(w.seed, S_DIRT, day, 99)
    offsets = np.array([-300, 0, 60])[rng.integers(0, 3, n)]
    return _Rows("products", cols, first, {"updated_at": ms}, offset=offsets,
                 country=np.zeros(n, dtype=np.int64),
                 currency=np.zeros(n, dtype=np.int64), flag=active, is_test=np.zeros(n, dtype=bool))


def _order_versions(w: _World, o: _DayOrders, rows_i: np.ndarray, slot: np.ndarray) -> _Rows:
    """Order rows (one per order and status change) of the orders placed on one day."""
    status = np.where(slot == 4, o.final_status[rows_i], slot)
    updated = o.event_ms[rows_i, slot]
    country = o.country[rows_i]
    is_test = o.is_test[rows_i]
    cols = {
        "order_id": o.text("order_id", rows_i),
        "customer_id": o.text("customer_id", rows_i),
        "order_ts": o.text("order_ts", rows_i),
        "status": np.array(ORDER_STATUS_CODES, dtype=object)[status],
        "channel": np.array(world.CHANNELS, dtype=object)[o.channel[rows_i]],
        "currency": np.array(CURRENCY_CODES, dtype=object)[o.currency[rows_i]],
        "shipping_fee": o.text("fee", rows_i),
        "order_discount": o.text("discount", rows_i),
        "coupon_code": o.text("coupon", rows_i),
        "shipping_country": np.array(COUNTRY_CODES, dtype=object)[country],
        "is_test": np.array(NATIVE_BOOLEAN["orders"], dtype=object)[is_test.astype(np.int64)],
        "updated_at": _format_ts(updated, NATIVE_TIMESTAMP["orders"]),
    }
    return _Rows("orders", cols, slot == 0, {"order_ts": o.t0[rows_i], "updated_at": updated},
                 offset=w.country_offset[country], country=country, currency=o.currency[rows_i],
                 flag=is_test, is_test=is_test, extra={"late_header": o.late_header[rows_i] & (slot == 0)})


def _payment_versions(w: _World, o: _DayOrders, rows_i: np.ndarray, slot: np.ndarray) -> _Rows:
    """Payment rows (one per payment and status change) of the orders placed on one day."""
    status = np.where(slot == 0, o.pay_status[rows_i], np.where(slot == 1, CAPTURED, REFUNDED))
    order = o.pay_order[rows_i]
    country = o.country[order]
    updated = o.pay_ms[rows_i, slot]
    style = NATIVE_TIMESTAMP["payments"]
    cols = {
        "payment_id": o.text("pay_id", rows_i),
        "order_id": o.text("order_id", order),
        "payment_ts": _format_ts(o.pay_ts[rows_i], style),
        "method": np.array(METHOD_CODES, dtype=object)[o.method[order]],
        "amount": _money(o.pay_amount[rows_i]),
        "currency": np.array(CURRENCY_CODES, dtype=object)[o.currency[order]],
        "status": np.array(PAYMENT_STATUS_CODES, dtype=object)[status],
        "updated_at": _format_ts(updated, style),
    }
    n = len(rows_i)
    return _Rows("payments", cols, slot == 0, {"payment_ts": o.pay_ts[rows_i], "updated_at": updated},
                 offset=w.country_offset[country], country=country, currency=o.currency[order],
                 flag=np.zeros(n, dtype=bool), is_test=np.zeros(n, dtype=bool))


def _event_rows(w: _World, o: _DayOrders, entity: str, k: int) -> tuple[_Rows, slice] | None:
    """The order or payment rows of the status changes `k` days after the orders were placed.

    The changes of the first NEAR_DAYS days (most of them) are rendered in one go when the
    first of those days comes, and dropped after them; the later ones (returns, mostly) in a
    second go, kept until the orders leave the lookback window.
    """
    days, rows_i, slots = o.order_events if entity == "orders" else o.pay_events
    lo, hi = np.searchsorted(days, [k, k + 1])
    if hi == lo:
        return None
    tier = (entity, k <= NEAR_DAYS)
    if tier not in o.rendered:
        split = int(np.searchsorted(days, NEAR_DAYS + 1))
        start, stop = (0, split) if k <= NEAR_DAYS else (split, len(days))
        render = _order_versions if entity == "orders" else _payment_versions
        o.rendered[tier] = (render(w, o, rows_i[start:stop], slots[start:stop]), start)
    rendered, start = o.rendered[tier]
    return rendered, slice(lo - start, hi - start)


def _order_rows(w: _World, day: int) -> _Rows:
    parts = []
    for placed in range(max(w.origin, day - LOOKBACK_DAYS), day + 1):
        o = w.day_orders(placed)
        k = day - placed
        if k <= 1 and o.placed_rows is None:
            o.placed_rows = _order_versions(w, o, np.arange(o.n), np.zeros(o.n, dtype=np.int64))
        if k == 0:
            parts.append((o.placed_rows, np.flatnonzero(~o.late_header)))
        elif k == 1 and o.late_header.any():
            parts.append((o.placed_rows, np.flatnonzero(o.late_header)))
        if (part := _event_rows(w, o, "orders", k)) is not None:
            parts.append(part)
    rows = _concat_rows(parts, "orders")
    rows.order = np.argsort(rows.ts["updated_at"], kind="stable")
    return rows


def _item_rows(w: _World, day: int) -> _Rows:
    o = w.day_orders(day)
    n = len(o.line_order)
    product = o.line_product
    cols = {
        "order_id": o.text("order_id", o.line_order),
        "line_number": _strings_of(o.line_number, str),
        "product_id": w.catalog.product_id[product],
        "quantity": _strings_of(o.line_quantity, str),
        "unit_price": _money(o.line_price),
        "line_discount": _money_or_blank(o.line_discount),
    }
    return _Rows("order_items", cols, np.ones(n, dtype=bool), {}, is_test=o.is_test[o.line_order],
                 extra={"quantity": o.line_quantity, "price": o.line_price, "discount": o.line_discount,
                        "order_index": o.line_order,
                        "late_product": w.catalog.export_day[product] > day,
                        "late_order_header": o.late_header[o.line_order]})


def _payment_rows(w: _World, day: int) -> _Rows:
    parts = []
    for placed in range(max(w.origin, day - LOOKBACK_DAYS), day + 1):
        if (part := _event_rows(w, w.day_orders(placed), "payments", day - placed)) is not None:
            parts.append(part)
    rows = _concat_rows(parts, "payments")
    rows.order = np.argsort(rows.ts["updated_at"], kind="stable")
    return rows


# -- dirt ----------------------------------------------------------------------------------


def _mixed_case(value: str, variant: int) -> str:
    variant %= 6
    if variant == 0:
        return value.upper()
    if variant == 1:
        return value.title()
    if variant == 2:
        return f" {value}"
    if variant == 3:
        return f"{value} "
    if variant == 4:
        return f" {value.capitalize()} "
    return value[:1].upper() + value[1:]


# The quarantine defects of an entity take together at most this share of its eligible rows: a
# row carries one defect at most, so at a dirty rate of 0.25 an entity with four kinds would have
# no valid row left (no payment, no revenue in gold).
MAX_QUARANTINED_SHARE = 0.5


def _apply_quarantine(rows: _Rows, rng: np.random.Generator, rate: float, day: int) -> np.ndarray:
    """Give each quarantine kind `rate` of the eligible rows (at most MAX_QUARANTINED_SHARE / kinds),
    one defect per row.

    Returns the index of each row's reason in QUARANTINE_REASONS, -1 for a clean row.
    """
    entity, n = rows.entity, rows.n
    reasons = QUARANTINE_REASONS[entity]
    reason = np.full(n, -1, dtype=np.int64)
    if rate <= 0 or n == 0:
        return reason
    kinds = [r for r in reasons if r != "test_order"]
    eligible = ~rows.is_test
    if entity in ("products", "orders"):
        eligible &= ~rows.first  # first versions stay clean: late headers and late products stay exact
    width = min(rate, MAX_QUARANTINED_SHARE / len(kinds))
    band = (rng.random(n) / width).astype(np.int64)
    pick = eligible & (band < len(kinds))
    reason[pick] = [reasons.index(kinds[b]) for b in band[pick].tolist()]
    if "test_order" in reasons:
        reason[rows.is_test] = reasons.index("test_order")
    variants = rng.integers(0, 1 << 30, n)
    future_days = rng.integers(14, 90, n)
    cols = rows.cols
    blanked: dict[int, tuple[str, str]] = {}
    for number, name in enumerate(reasons):
        index = np.flatnonzero(reason == number)
        if not len(index) or name == "test_order":
            continue
        v = variants[index]
        if name == "missing_key":
            keys = KEY_COLUMNS[entity]
            for i, key_number in zip(index.tolist(), (v % len(keys)).tolist(), strict=True):
                blanked[i] = (keys[key_number], cols[keys[key_number]][i])
                cols[keys[key_number]][i] = ""
        elif name in ("bad_timestamp", "future_timestamp"):
            columns = TIMESTAMP_COLUMNS[entity]
            for column_number, column in enumerate(columns):
                at = v % len(columns) == column_number
                rows_at = index[at]
                if name == "bad_timestamp":
                    cols[column][rows_at] = [_bad_timestamp(ms, variant // 7) for ms, variant in
                                             zip(rows.ts[column][rows_at].tolist(), v[at].tolist(), strict=True)]
                else:
                    moments = day * DAY_MS + future_days[rows_at] * DAY_MS + (v[at] % 86_400) * 1000
                    cols[column][rows_at] = _format_ts(moments, NATIVE_TIMESTAMP[entity])
        elif name == "bad_currency":
            cols[CURRENCY_COLUMN[entity]][index] = np.array(BAD_CURRENCIES, dtype=object)[v % len(BAD_CURRENCIES)]
        elif name == "non_positive_quantity":  # zero, or the quantity negated
            cols["quantity"][index] = np.where(v % 2 == 1, np.char.add("-", rows.extra["quantity"][index].astype(str)),
                                               "0").astype(object)
            cols["line_discount"][index] = ""
        elif name == "non_positive_price":
            cols["unit_price"][index] = np.array(["0.00", "0"], dtype=object)[v % 2]
            cols["line_discount"][index] = ""
        elif name == "bad_discount":
            gross = rows.extra["quantity"][index] * rows.extra["price"][index]
            cols["line_discount"][index] = _money(np.where(v % 2 == 1, -(100 + v % 2000), gross + 100 + v % 5000))
    # Two payments of one order that both lost a key could become identical by chance; silver
    # would take one for a duplicate. Empty the other key instead.
    keys = KEY_COLUMNS[entity]
    if len(keys) == 2 and blanked:
        seen: set[tuple] = set()
        for i in sorted(blanked):
            row = tuple(rows.cols[c][i] for c in COLUMNS[entity])
            if row in seen:
                column, original = blanked[i]
                other = keys[1] if column == keys[0] else keys[0]
                rows.cols[other][i], rows.cols[column][i] = "", original
                row = tuple(rows.cols[c][i] for c in COLUMNS[entity])
            seen.add(row)
    return reason


def _apply_cosmetic(rows: _Rows, rng: np.random.Generator, rate: float,
                    clean: np.ndarray) -> dict[str, np.ndarray]:
    """Cosmetic dirt on clean rows, at `rate` per kind; returns a mask per kind."""
    entity, n = rows.entity, rows.n
    marks = {kind: np.zeros(n, dtype=bool) for kind in COSMETIC_KINDS[entity]}
    if rate <= 0 or n == 0:
        return marks
    cols = rows.cols
    draws = {kind: rng.random(n) for kind in COSMETIC_KINDS[entity]}
    variants = rng.integers(0, 1 << 30, (n, 2))

    def chosen(kind, eligible=True):
        mask = clean & (draws[kind] < rate) & eligible
        marks[kind] = mask
        return np.flatnonzero(mask).tolist()

    if entity == "customers":
        for i in chosen("email_format"):
            email, v = cols["email"][i], int(variants[i, 0])
            local, domain = email.split("@", 1)
            email = (email.upper(), f"{local.title()}@{domain.capitalize()}", f" {email}", f"{email} ",
                     f"  {local.capitalize()}@{domain} ")[v % 5]
            cols["email"][i] = email
        for i in chosen("invalid_email", ~marks["email_format"]):
            email, v = cols["email"][i], int(variants[i, 0])
            local, domain = email.split("@", 1)
            cols["email"][i] = (f"{local}.{domain}", f"{local}@@{domain}",
                                f"{local}@{domain.split('.', 1)[0]}", f"{local} at {domain}")[v % 4]
        for i in chosen("missing_optional"):
            present = [c for c in OPTIONAL_COLUMNS[entity] if cols[c][i]]
            if present:
                cols[present[int(variants[i, 1]) % len(present)]][i] = ""
            else:
                marks["missing_optional"][i] = False
    if entity == "products":
        for i in chosen("missing_optional"):
            cols["brand"][i] = ""
    if entity in CODE_COLUMNS:
        columns = CODE_COLUMNS[entity]
        for i in chosen("mixed_case_code"):
            v = int(variants[i, 1])
            column = columns[v % len(columns)]
            cols[column][i] = _mixed_case(cols[column][i], v // 7)
    if entity in COUNTRY_COLUMN:
        column = COUNTRY_COLUMN[entity]
        u = draws["country_name"]
        band = np.where(clean & (u < 3 * rate), (u / rate).astype(np.int64), -1)
        spellings = {
            "country_name": np.array([c.name for c in world.COUNTRIES], dtype=object),
            "country_lowercase": np.array([c.code.lower() for c in world.COUNTRIES], dtype=object),
            "country_alpha3": np.array([c.alpha3 for c in world.COUNTRIES], dtype=object),
        }
        lower_names = np.array([c.name.lower() for c in world.COUNTRIES], dtype=object)
        for b, kind in enumerate(spellings):
            marks[kind] = band == b
            index = np.flatnonzero(band == b)
            country = rows.country[index]
            values = spellings[kind][country]
            if kind == "country_name":
                values = np.where(variants[index, 0] % 3 == 0, lower_names[country], values)
            cols[column][index] = values
    if entity in CURRENCY_COLUMN:
        column = CURRENCY_COLUMN[entity]
        symbols = np.array([c.symbol for c in world.CURRENCIES], dtype=object)
        index = np.array(chosen("currency_lowercase"), dtype=np.int64)
        cols[column][index] = np.array([c.code.lower() for c in world.CURRENCIES], dtype=object)[rows.currency[index]]
        index = np.array(chosen("currency_symbol", (symbols != "")[rows.currency] & ~marks["currency_lowercase"]),
                         dtype=np.int64)
        symbol = symbols[rows.currency[index]]
        cols[column][index] = np.where(variants[index, 0] % 4 != 0, symbol, " " + symbol)
    if entity in BOOLEAN_COLUMN:
        column = BOOLEAN_COLUMN[entity]
        others = np.array([[s for s in BOOLEAN_SPELLINGS[value] if s != NATIVE_BOOLEAN[entity][value]]
                           for value in (False, True)], dtype=object)
        index = np.array(chosen("boolean_format"), dtype=np.int64)
        if entity == "orders":
            # A test order's flag is spelt as variously as any other's: it is the value that sends the
            # order to quarantine, so silver must read `1` or `yes` there too. Not counted among the
            # clean rows' dirt (the order is quarantined as a test order).
            index = np.union1d(index, np.flatnonzero(rows.is_test & (draws["boolean_format"] < rate)))
        cols[column][index] = others[rows.flag[index].astype(np.int64), variants[index, 1] % others.shape[1]]
    if TIMESTAMP_COLUMNS[entity]:
        native = NATIVE_TIMESTAMP[entity]
        styles = [s for s in TIMESTAMP_STYLES if s != native]
        picked = np.array(chosen("timestamp_format"), dtype=np.int64)
        style_of = variants[picked, 0] % len(styles)
        for number, style in enumerate(styles):
            index = picked[style_of == number]
            for column in TIMESTAMP_COLUMNS[entity]:
                cols[column][index] = _format_ts(rows.ts[column][index], style, rows.offset[index])
    if entity == "order_items":
        for i in chosen("price_off_100x"):
            cols["unit_price"][i] = _money1(int(rows.extra["price"][i]) * 100)
    return marks


# -- files -----------------------------------------------------------------------------------


# Entities whose values never hold a comma, a quote or a line break (keys, codes, numbers,
# timestamps, and the dirt written into them), so no field ever needs quoting.
PLAIN_ENTITIES = ("orders", "order_items", "payments")


def _csv_text(header: list[str], cols: list[np.ndarray], extra_field_row: int | None = None,
              plain: bool = False) -> str:
    """RFC 4180 CSV text, exactly what `csv.writer(lineterminator="\n")` writes.

    Rows of `plain` entities are joined directly, several times faster than the csv module and
    the same bytes; the tests check every file against the csv module.
    """
    lists = [c.tolist() for c in cols]
    if plain and extra_field_row is None:
        lines = itertools.chain((",".join(header),), map(",".join, zip(*lists, strict=True)), ("",))
        return "\n".join(lines)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    if extra_field_row is None:
        writer.writerows(zip(*lists, strict=True))
    else:
        for number, row in enumerate(zip(*lists, strict=True)):
            writer.writerow((*row, "1") if number == extra_field_row else row)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    """Written under a temporary name, then renamed: a file cut short (a full disk, a kill) is never
    there under an export's name for the loader to land, only as a `*.csv.partial` it passes over."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _has_non_ascii(rows: _Rows, i: int) -> bool:
    return any(not str(rows.cols[c][i]).isascii() for c in rows.cols)


def _day_entity(w: _World, entity: str, day: int, rows: _Rows, malformed: tuple[str, str] | None,
                out_dir: Path, manifest: dict, claim: Callable[[Path], None]) -> None:
    """Dirty, split, duplicate, write and count one entity's rows of one day."""
    rate = w.rate
    rng = _rng(w.seed, S_DIRT, day, ENTITIES.index(entity))
    reason = _apply_quarantine(rows, rng, rate, day)
    marks = _apply_cosmetic(rows, rng, rate, reason < 0)
    n = rows.n
    today = _date(day)
    columns = list(COLUMNS[entity])
    order = rows.file_order()
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)

    # a malformed extra file takes some rows with it
    in_main = np.ones(n, dtype=bool)
    part_rows = None
    if malformed is not None and malformed[0] == entity:
        why = malformed[1]
        if entity == "order_items":
            orders = np.unique(rows.extra["order_index"][~rows.is_test])
            size = min(len(orders), max(1, len(orders) // 100))
            take = rng.choice(orders, size, replace=False) if len(orders) else []
            eligible = np.isin(rows.extra["order_index"], take)
        else:
            eligible = ~rows.first
        if why == "not_utf8":
            eligible &= np.array([_has_non_ascii(rows, i) for i in range(n)], dtype=bool) if n else eligible
        candidates = np.flatnonzero(eligible)
        if why == "not_utf8" and not len(candidates):
            why = "wrong_column_count"
            candidates = np.flatnonzero(~rows.first)
        if why == "empty":
            candidates = candidates[:0]
        elif entity != "order_items" and len(candidates):
            candidates = np.sort(rng.choice(candidates, max(1, len(candidates) // 50), replace=False))
        if why in ("wrong_column_count", "wrong_header") and not len(candidates):
            why = "empty"
        in_main[candidates] = False
        part_rows = (why, rows.take(candidates[np.argsort(rank[candidates], kind="stable")]))

    # the main file, in file order; exact duplicates: a copy of a row a little further down
    main = order[in_main[order]]
    m = len(main)
    duplicate = (rng.random(m) < rate) if rate > 0 else np.zeros(m, dtype=bool)
    copies = np.flatnonzero(duplicate)
    later = copies + rng.integers(0, 30, len(copies))
    position = np.concatenate([np.arange(m) * 2.0, later * 2.0 + 1])
    layout = main[np.concatenate([np.arange(m), copies])[np.argsort(position, kind="stable")]]
    text = _csv_text(columns, [rows.cols[c][layout] for c in columns], plain=entity in PLAIN_ENTITIES)
    main_path = relative_path(entity, today)
    claim(main_path)
    _write(out_dir / main_path, text.encode("utf-8"))
    manifest["files"][main_path.as_posix()] = {"entity": entity, "rows": len(layout), "malformed": None}

    if part_rows is not None:
        why, part = part_rows
        part_path = relative_path(entity, today, 2)
        if why == "empty":
            data = b""
        else:
            header = list(columns)
            if why == "wrong_header":
                renamable = [i for i, c in enumerate(header) if c in WRONG_HEADER_NAMES]
                at = renamable[int(rng.integers(0, len(renamable)))]
                header[at] = WRONG_HEADER_NAMES[header[at]]
            extra_row = int(rng.integers(0, part.n)) if why == "wrong_column_count" else None
            body = _csv_text(header, [part.cols[c] for c in columns], extra_row)
            if why == "not_utf8":
                data = body.encode("latin-1", errors="replace")
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    pass
                else:
                    why = "wrong_column_count"
                    data = _csv_text(header, [part.cols[c] for c in columns], 0).encode()
            else:
                data = body.encode("utf-8")
        claim(part_path)
        _write(out_dir / part_path, data)
        rows_written = 0 if why == "empty" else part.n
        manifest["files"][part_path.as_posix()] = {"entity": entity, "rows": rows_written, "malformed": why}
        manifest["malformed_files"].append({"path": part_path.as_posix(), "entity": entity, "reason": why,
                                            "rows": rows_written})

    # the counts, over the distinct rows of the main file
    reasons = QUARANTINE_REASONS[entity]
    reason, first = reason[main], rows.first[main]
    clean = reason < 0
    counts = {
        "rows": len(layout),
        "exact_duplicate": len(copies),
        "quarantine": {r: int((reason == i).sum()) for i, r in enumerate(reasons)},
        "cosmetic": {k: int(v[main].sum()) for k, v in marks.items()},
        "resent_versions": int((~first).sum()),
    }
    if entity == "customers":
        counts["new_customers"] = int(first.sum())
    elif entity == "products":
        counts["new_products"] = int(first.sum())
    elif entity == "orders":
        counts["new_orders"] = int(first.sum())
        counts["late_headers"] = int(rows.extra["late_header"][main].sum())
        counts["guest_orders"] = int((clean & (rows.cols["customer_id"][main] == "")).sum())
    elif entity == "order_items":
        normal = clean & ~rows.is_test[main]
        counts["late_product"] = int((normal & rows.extra["late_product"][main]).sum())
        counts["late_order_header"] = int((normal & rows.extra["late_order_header"][main]).sum())
        counts["lines_of_test_orders"] = int(rows.is_test[main].sum())
    manifest["entities"][entity] = counts


def _malformed_plan(w: _World, day: int) -> tuple[str, str] | None:
    if w.rate <= 0:
        return None
    rng = _rng(w.seed, S_FILES, day)
    if rng.random() >= min(1.0, 2 * w.rate):
        return None
    reason = MALFORMED_REASONS[int(rng.integers(0, len(MALFORMED_REASONS)))]
    entities = ("customers", "products") if reason == "not_utf8" else ENTITIES
    return entities[int(rng.integers(0, len(entities)))], reason


def _generate_day(w: _World, day: int, out_dir: Path) -> dict:
    today = _date(day)
    manifest: dict = {
        "date": today.isoformat(),
        "seed": w.seed,
        "dirty_rate": w.rate,
        "orders_per_day": w.opd,
        "origin": _date(w.origin).isoformat(),
        "generator_version": GENERATOR_VERSION,
        "files": {},
        "entities": {},
        "malformed_files": [],
    }
    # Until the day's manifest lists its files, a claim names the world writing them and each file
    # before it is written: a run stopped midway leaves it, and the same world may then write the
    # day again over those files, and those only (_check_days_to_write).
    claim = claim_path(out_dir, today)
    claimed = {**{key: manifest[key] for key in WORLD_KEYS}, "files": []}

    def claim_file(relative: Path) -> None:
        claimed["files"].append(relative.as_posix())
        _write(claim, json.dumps(claimed).encode("utf-8"))

    _write(claim, json.dumps(claimed).encode("utf-8"))
    for entity in ENTITIES:  # a rerun must not leave an old extra file behind
        folder = (out_dir / relative_path(entity, today)).parent
        for stale in folder.glob(f"{entity}_{today:%Y%m%d}_part*.csv"):
            stale.unlink()
    malformed = _malformed_plan(w, day)
    builders = {"customers": _customer_rows, "products": _product_rows, "orders": _order_rows,
                "order_items": _item_rows, "payments": _payment_rows}
    for entity in ENTITIES:
        _day_entity(w, entity, day, builders[entity](w, day), malformed, out_dir, manifest, claim_file)
    w.release(day)
    path = out_dir / MANIFEST_DIR / f"manifest_{today:%Y%m%d}.json"
    _write(path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    claim.unlink()
    return manifest


def claim_path(out_dir: Path, day: date) -> Path:
    return out_dir / MANIFEST_DIR / f"writing_{day:%Y%m%d}.json"


class WorldMismatch(ValueError):
    """The output directory already holds days of a different world (other options or origin)."""


WORLD_KEYS = ("date", "seed", "orders_per_day", "dirty_rate", "origin")


def _world_of(manifest: dict) -> tuple:
    return (manifest.get("seed"), manifest.get("orders_per_day"), manifest.get("dirty_rate"),
            manifest.get("origin"))


def _read_json(path: Path) -> dict:
    """A manifest or claim as a dict; {} when there is none, or one cut short (it vouches for nothing)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _resolve_origin(out_dir: Path, start: date, end: date, seed: int, orders_per_day: int,
                    dirty_rate: float) -> date:
    """The first day of the world this run belongs to (see the module docstring).

    The newest manifest before `start` names it; without one the world starts at `start`. The
    neighbouring manifests on both sides must come from the same world, or the run would mix two.
    """
    folder = out_dir / MANIFEST_DIR
    dated = []
    for path in sorted(folder.glob("manifest_*.json")) if folder.is_dir() else []:
        try:
            dated.append((datetime.strptime(path.stem, "manifest_%Y%m%d").date(), path))
        except ValueError:
            continue
    earlier = [path for day, path in dated if day < start]
    later = [path for day, path in dated if day > end]
    neighbours = []
    for path in earlier[-1:] + later[:1]:
        manifest = _read_json(path)
        if "date" not in manifest:
            # It names the world the run continues: guessing would write another world's days.
            raise WorldMismatch(f"{path} is not a manifest the generator wrote (cut short by an interrupted "
                                "run?); remove that day's files and manifest and generate the day again with "
                                "the same options, or write to another directory")
        neighbours.append(manifest)
    origin = start
    if earlier:
        previous = neighbours[0]
        origin = date.fromisoformat(previous.get("origin", previous["date"]))
    world_key = (seed, orders_per_day, dirty_rate, origin.isoformat())
    for manifest in neighbours:
        if _world_of(manifest) != world_key:
            which, remedy = _other_world(manifest, world_key, start)
            raise WorldMismatch(f"{out_dir} already holds {manifest.get('date')} {which}; {remedy}, "
                                "or write to another directory")
    return origin


def _other_world(manifest: dict, world_key: tuple, start: date) -> tuple[str, str]:
    """What sets the world of a day's manifest apart from this run's (the options that differ, or
    its first day), and how to write into it."""
    names = ("--seed", "--orders-per-day", "--dirty-rate")
    theirs, ours = dict(zip(names, _world_of(manifest), strict=False)), dict(zip(names, world_key, strict=False))
    differ = [f"{name} {ours[name]} here, {theirs[name]} there" for name in names if ours[name] != theirs[name]]
    if differ:
        return (f"of another world ({'; '.join(differ)})",
                "continue it with " + " ".join(f"{name} {theirs[name]}" for name in names))
    return (f"of a world whose first day is {manifest.get('origin')}, and --start {start} would make "
            f"{world_key[3]} the first", f"give --start {manifest.get('origin')} or later")


class WorldTooLarge(ValueError):
    """The world, from its first day to the last day asked for, would hold more orders than fit in memory."""


# Orders of a whole world, from its first day on, at most: the generator keeps every customer of
# the world in memory (about a third as many as orders), and 100 million orders are about 26 times
# the largest world `ecom bench` generates.
MAX_WORLD_ORDERS = 100_000_000


def _world_orders(orders_per_day: int, origin: date, end: date) -> float:
    """Orders a world places from its first day to `end`, at its yearly growth, about."""
    days = (end - origin).days + 1
    if YEARLY_GROWTH <= 0:
        return float(orders_per_day) * days
    daily = (1 + YEARLY_GROWTH) ** (1 / 365.0)
    return orders_per_day * (daily ** days - 1) / (daily - 1)


class ForeignFiles(ValueError):
    """The days to write already hold CSV files that the generator did not write."""


def _first_file(out_dir: Path) -> Path | None:
    """A file under `out_dir` by name order, but for the top's `_` and `.` names, which the loader
    does not search either (a warehouse kept in `_warehouse`, `.git`), and names starting with `.`."""
    for dirpath, dirnames, filenames in os.walk(out_dir):
        top = Path(dirpath) == out_dir
        dirnames[:] = sorted(d for d in dirnames if not (d.startswith(".") or (top and d.startswith("_"))))
        for name in sorted(filenames):
            if not (name.startswith(".") or (top and name.startswith("_"))):
                return Path(dirpath, name)
    return None


def _check_days_to_write(out_dir: Path, start: date, days: int, world_key: tuple) -> None:
    """Refuse, before anything is written, a run that would replace what is not its own.

    A run rewrites its days whole: each entity's main file, and it deletes any `_partN` file.
    So a day to write may only hold the files its manifest lists, and that manifest must come
    from the same world (`world_key`: seed, orders per day, dirty rate, origin); anything else
    is real exports, a file added by hand or another world's day, and would be lost or mixed.
    The files a run of the same world was stopped writing (its claim lists them) are its own too.
    Only the day folders are listed and the day manifests and claims read, never the CSV files.
    """
    unknown: list[str] = []
    foreign: list[dict] = []
    # A folder of exports the generator did not write (it has no manifests): invented days among
    # them would land beside real ones, their keys (C-000001) mixed with the real customers'.
    other = None
    if out_dir.is_dir() and not (out_dir / MANIFEST_DIR).is_dir():  # else made by the run, or a file as --out
        other = _first_file(out_dir)
    if other is not None:
        raise ForeignFiles(f"{out_dir} holds files the generator did not write ({other.relative_to(out_dir)}; "
                           f"it has no {MANIFEST_DIR}/ of its manifests); nothing was written: choose another output "
                           "directory (--out), a new or empty one or one it wrote")
    # A file where a folder goes would stop the run halfway through a day.
    folders = {Path(MANIFEST_DIR)}
    for i in range(days):
        for entity in ENTITIES:
            folder = Path(relative_path(entity, start + timedelta(days=i))).parent
            folders.update((folder, *folder.parents[:-1]))  # up to the entity's folder, not out_dir itself
    for folder in sorted(folders):
        # a broken symbolic link exists not, and cannot be made a folder
        if os.path.lexists(out_dir / folder) and not (out_dir / folder).is_dir():
            raise ForeignFiles(f"{out_dir / folder} is a file where the days to write need a folder; nothing was "
                               "written: move it away, or choose another output directory (--out)")
    for i in range(days):
        day = start + timedelta(days=i)
        manifest = _read_json(out_dir / MANIFEST_DIR / f"manifest_{day:%Y%m%d}.json")
        claim = _read_json(claim_path(out_dir, day))
        foreign += [found for found in (manifest, claim) if found and _world_of(found) != world_key]
        listed = {*manifest.get("files", {}), *(claim.get("files", []) if _world_of(claim) == world_key else [])}
        for entity in ENTITIES:
            folder = (out_dir / relative_path(entity, day)).parent
            names = sorted(f.relative_to(out_dir).as_posix() for f in folder.iterdir()
                           if f.name.lower().endswith(".csv")) if folder.is_dir() else []
            unknown += [name for name in names if name not in listed]
    foreign = list({found.get("date"): found for found in foreign}.values())  # a day's manifest and claim: once
    if foreign:
        first = foreign[0]
        more = f" and {len(foreign) - 1} more day{'s' if len(foreign) > 2 else ''}" if len(foreign) > 1 else ""
        which, remedy = _other_world(first, world_key, start)
        raise WorldMismatch(
            f"{out_dir} already holds {first.get('date')}{more} {which}; nothing was written: {remedy}, choose "
            f"another output directory (--out), or remove those days' files and manifests (and claims, "
            f"{MANIFEST_DIR}/writing_*.json)"
        )
    if unknown:
        many = len(unknown) > 1
        raise ForeignFiles(
            f"{out_dir} already holds {len(unknown)} CSV file{'s' if many else ''} on the days to write that "
            f"no manifest of the generator lists ({'first ' if many else ''}{unknown[0]}); nothing was written: "
            "choose another output directory (--out) or remove them"
        )


# Worker processes pay off only for big enough runs: each one recomputes the order lives of the
# weeks before its first day, and a spawned one also starts Python and builds the world.
PARALLEL_MIN_LINES = {"fork": 100_000, "spawn": 400_000}
MIN_DAYS_PER_WORKER = 20
MAX_WORKERS = 8


def _can_fork() -> bool:
    import threading

    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


def _auto_workers(days: int, orders_per_day: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    if days * orders_per_day * 2.5 < PARALLEL_MIN_LINES["fork" if _can_fork() else "spawn"]:
        return 1
    return max(1, min(cpus, days // MIN_DAYS_PER_WORKER, MAX_WORKERS))


_INHERITED: dict[tuple, _World] = {}  # a world built before forking, reused by the forked workers


def _run_block(messages, seed: int, origin: int, first: int, last: int, orders_per_day: int,
               dirty_rate: float, out_dir: str) -> None:
    """Worker process: generate days first..last and report each day's manifest."""
    try:
        key = (seed, origin, orders_per_day, dirty_rate)
        w = _INHERITED.get(key)
        if w is None or w.last_day < last:
            w = _World(seed, origin, last, orders_per_day, dirty_rate)
        for day in range(first, last + 1):
            messages.put(("day", _generate_day(w, day, Path(out_dir))))
        messages.put(("done", None))
    except BaseException:  # the parent re-raises it
        messages.put(("error", traceback.format_exc()))


class _Workers:
    """Worker processes, one per contiguous block of days; the files are the same as in one process.

    Forked workers share the world the parent builds once. When the caller runs threads
    (Dagster does), forking is not safe and each spawned worker builds its own. Start them
    before any progress bar exists: its monitor thread would rule out forking.
    """

    def __init__(self, workers: int, seed: int, origin: int, first: int, last: int, orders_per_day: int,
                 dirty_rate: float, out_dir: Path):
        if _can_fork():
            context = multiprocessing.get_context("fork")
            _INHERITED.clear()
            _INHERITED[(seed, origin, orders_per_day, dirty_rate)] = _World(
                seed, origin, last, orders_per_day, dirty_rate)
        else:
            context = multiprocessing.get_context("spawn")
        self.messages = context.Queue()
        blocks = [b for b in np.array_split(np.arange(first, last + 1), workers) if len(b)]
        self.processes = [
            context.Process(target=_run_block, daemon=True,
                            args=(self.messages, seed, origin, int(b[0]), int(b[-1]), orders_per_day,
                                  dirty_rate, str(out_dir)))
            for b in blocks
        ]
        try:
            for process in self.processes:
                process.start()
        except BaseException:
            self.stop()
            raise
        finally:
            _INHERITED.clear()

    def collect(self, on_day) -> list[dict]:
        """Every day's manifest, calling `on_day()` as each one arrives."""
        manifests: list[dict] = []
        try:
            finished = 0
            while finished < len(self.processes):
                try:
                    kind, payload = self.messages.get(timeout=2)
                except queue.Empty:
                    if any(p.exitcode not in (None, 0) for p in self.processes):
                        raise RuntimeError("a generator worker process died") from None
                    continue
                if kind == "day":
                    manifests.append(payload)
                    on_day()
                elif kind == "done":
                    finished += 1
                else:
                    raise RuntimeError(f"a generator worker failed:\n{payload}")
            for process in self.processes:
                process.join()
        finally:
            self.stop()
        return sorted(manifests, key=lambda m: m["date"])

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join()


def generate(out_dir: Path, start: date, days: int, orders_per_day: int = 1000, seed: int = 42,
             dirty_rate: float = 0.02, progress: bool = True, *, workers: int | None = None) -> dict:
    """Write `days` days of raw exports from `start` into `out_dir`; returns their manifests.

    The returned dict holds the world's parameters, one manifest per day under `days` (each
    also written to `<out_dir>/_manifest/manifest_YYYYMMDD.json`), totals and a one-line
    `summary`. Big runs use one worker process per core (`workers`, default: automatic);
    the files do not depend on it.
    """
    from tqdm import tqdm

    if days < 1:
        raise ValueError("days must be at least 1")
    if not 1 <= orders_per_day <= MAX_ORDERS_PER_DAY:
        raise ValueError(f"orders_per_day must be between 1 and {MAX_ORDERS_PER_DAY:,}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}")
    if not 0 <= dirty_rate <= 0.5:
        raise ValueError("dirty_rate must be between 0 and 0.5")
    if problem := unloadable_days(start, days):
        raise ValueError(problem)
    out_dir = Path(out_dir)
    end = start + timedelta(days=days - 1)
    origin = _resolve_origin(out_dir, start, end, seed, orders_per_day, dirty_rate)
    # The size first: looking at the days to write reads a folder per entity and day, about 17
    # CPU seconds for the 49,000 days of a world then refused for its size.
    if (orders := _world_orders(orders_per_day, origin, end)) > MAX_WORLD_ORDERS:
        growth = f", growing {YEARLY_GROWTH:.0%} a year," if YEARLY_GROWTH > 0 else ""
        raise WorldTooLarge(
            f"a world from {origin} to {end} at {orders_per_day:,} order{'s' if orders_per_day > 1 else ''} a day"
            f"{growth} places about {orders:,.0f} orders, more than the {MAX_WORLD_ORDERS:,} a world can hold in "
            "memory; use fewer --orders-per-day or --days")
    _check_days_to_write(out_dir, start, days, (seed, orders_per_day, dirty_rate, origin.isoformat()))
    workers = _auto_workers(days, orders_per_day) if workers is None else max(1, min(workers, days))
    first, last = _day_num(start), _day_num(end)
    pool = None
    if workers > 1:
        pool = _Workers(workers, seed, _day_num(origin), first, last, orders_per_day, dirty_rate, out_dir)
    with tqdm(total=days, desc="generating", unit="day", file=sys.stderr, disable=not progress) as bar:
        if pool is not None:
            manifests = pool.collect(lambda: bar.update(1))
        else:
            w = _World(seed, _day_num(origin), last, orders_per_day, dirty_rate)
            manifests = []
            for day in range(first, last + 1):
                manifests.append(_generate_day(w, day, out_dir))
                bar.update(1)
    totals: dict[str, dict[str, int]] = {}
    for manifest in manifests:
        for entity, counts in manifest["entities"].items():
            total = totals.setdefault(entity, {"rows": 0, "exact_duplicate": 0, "quarantined": 0})
            total["rows"] += counts["rows"]
            total["exact_duplicate"] += counts["exact_duplicate"]
            total["quarantined"] += sum(counts["quarantine"].values())
    malformed = sum(len(m["malformed_files"]) for m in manifests)
    summary = (f"{totals['orders']['rows']:,} order rows, {totals['order_items']['rows']:,} order lines, "
               f"{totals['payments']['rows']:,} payments, {totals['customers']['rows']:,} customers, "
               f"{totals['products']['rows']:,} products; "
               f"{sum(t['quarantined'] for t in totals.values()):,} rows for quarantine, "
               f"{sum(t['exact_duplicate'] for t in totals.values()):,} duplicates, "
               f"{malformed} malformed files")
    return {"seed": seed, "orders_per_day": orders_per_day, "dirty_rate": dirty_rate,
            "origin": origin.isoformat(), "start": start.isoformat(), "end": end.isoformat(),
            "days": manifests, "totals": totals, "summary": summary}
