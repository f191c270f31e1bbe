"""The source simulator: determinism, continuation, the CSV contract, and a manifest that an
independent reading of the written files confirms, reason by reason.

The checker below re-implements the silver rules (SPEC section 6) from scratch on the raw
files: it shares nothing with the generator but the column contract and the seeds.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

from conftest import ecom_env, run_ecom
from ecom import world
from ecom.contract import COLUMNS, ENTITIES, LAST_DAY, MAX_ORDERS_PER_DAY, MAX_SEED, relative_path
from ecom.generate import COSMETIC_KINDS, QUARANTINE_REASONS, ForeignFiles, WorldMismatch, generate

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"


# -- reading what was written ----------------------------------------------------------------


def read_seed(name: str) -> list[dict[str, str]]:
    with open(SEEDS / f"{name}.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def file_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def manifests(root: Path) -> dict[str, dict]:
    return {m["date"]: m for m in (json.loads(p.read_text(encoding="utf-8"))
                                   for p in sorted((root / "_manifest").glob("manifest_*.json")))}


def read_csv(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [tuple(r) for r in rows[1:]]


def write_csv(rows: list) -> str:
    """What the csv module writes for these rows (RFC 4180, minimal quoting, LF line ends)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def day_files(root: Path, manifest: dict, entity: str, well_formed: bool = True) -> list[Path]:
    return [root / path for path, info in manifest["files"].items()
            if info["entity"] == entity and (info["malformed"] is None) == well_formed]


# -- an independent checker of the silver rules ----------------------------------------------

CURRENCIES = {row["currency_code"] for row in read_seed("currencies")}
SYMBOLS = {row["symbol"]: row["currency_code"] for row in read_seed("currencies") if row["symbol"]}
COUNTRIES = read_seed("countries")
ALPHA2 = {row["country_code"] for row in COUNTRIES}
ALPHA3 = {row["alpha3"] for row in COUNTRIES}
NAMES = {row["country_name"].upper() for row in COUNTRIES}
TRUE = {"true", "1", "yes"}
EMAIL = re.compile(r"^[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")
ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{3})?(Z|[+-]\d{2}:\d{2})$")
SPACE = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$")
DMY = re.compile(r"^(\d{2})/(\d{2})/(\d{4}) (\d{2}):(\d{2})$")
NATIVE = {"customers": re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"),
          "products": SPACE, "orders": SPACE,
          "payments": re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")}
NATIVE_BOOL = {"customers": ("true", "false"), "products": ("1", "0"), "orders": ("true", "false")}
TIMESTAMPS = {"customers": ("signup_at", "updated_at"), "products": ("updated_at",),
              "orders": ("order_ts", "updated_at"), "payments": ("payment_ts", "updated_at"),
              "order_items": ()}
KEYS = {"customers": ("customer_id",), "products": ("product_id",), "orders": ("order_id",),
        "order_items": ("order_id", "product_id"), "payments": ("payment_id", "order_id")}
CODES = {"customers": ("segment",), "products": ("category", "subcategory"), "orders": ("status", "channel"),
         "payments": ("method", "status")}


def parse_timestamp(value: str) -> datetime | None:
    """The three accepted forms, strictly; an impossible date is no date."""
    value = value.strip()
    try:
        if match := ISO.match(value):
            y, mo, d, h, mi, s, fraction, zone = match.groups()
            tz = UTC if zone == "Z" else timezone(
                (1 if zone[0] == "+" else -1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
            micro = int(fraction[1:]) * 1000 if fraction else 0
            moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)
            return moment.astimezone(UTC)
        if match := SPACE.match(value):
            return datetime(*map(int, match.groups()), tzinfo=UTC)
        if match := DMY.match(value):
            d, mo, y, h, mi = map(int, match.groups())
            return datetime(y, mo, d, h, mi, tzinfo=UTC)
    except ValueError:
        return None
    return None


def currency_code(value: str) -> str | None:
    value = value.strip().upper()
    value = SYMBOLS.get(value, value)
    return value if value in CURRENCIES else None


def decimal(value: str) -> Decimal | None:
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        return None


def verdict(entity: str, row: dict[str, str], partition: date) -> str | None:
    """The quarantine reason of one row, or None when it is valid."""
    if any(row[key].strip() == "" for key in KEYS[entity]):
        return "missing_key"
    if entity == "order_items":
        if int(row["quantity"]) <= 0:
            return "non_positive_quantity"
        price = decimal(row["unit_price"])
        if price is None or price <= 0:
            return "non_positive_price"
        discount = decimal(row["line_discount"]) if row["line_discount"].strip() else Decimal(0)
        if discount < 0 or discount > int(row["quantity"]) * price:
            return "bad_discount"
        return None
    parsed = [parse_timestamp(row[c]) for c in TIMESTAMPS[entity]]
    if any(p is None for p in parsed):
        return "bad_timestamp"
    limit = datetime(partition.year, partition.month, partition.day, tzinfo=UTC) + timedelta(days=2)
    if any(p > limit for p in parsed):
        return "future_timestamp"
    if entity in ("products", "orders", "payments") and currency_code(row["currency"]) is None:
        return "bad_currency"
    if entity == "orders" and row["is_test"].strip().lower() in TRUE:
        return "test_order"
    return None


def cosmetic(entity: str, row: dict[str, str]) -> set[str]:
    """The cosmetic dirt the checker can see on a valid row."""
    found = set()
    if entity in CODES and any(row[c] != row[c].strip().lower() for c in CODES[entity]):
        found.add("mixed_case_code")
    if entity == "customers":
        email = row["email"].strip().lower()
        if not EMAIL.match(email):
            found.add("invalid_email")
        elif email != row["email"]:
            found.add("email_format")
    country = {"customers": "country", "orders": "shipping_country"}.get(entity)
    if country:
        value = row[country]
        if value in ALPHA3:
            found.add("country_alpha3")
        elif value.upper() in NAMES:
            found.add("country_name")
        elif value != value.upper() and value.upper() in ALPHA2:
            found.add("country_lowercase")
    if entity in ("products", "orders", "payments"):
        value = row["currency"]
        if value.strip() in SYMBOLS:
            found.add("currency_symbol")
        elif value != value.upper():
            found.add("currency_lowercase")
    flag = {"customers": "marketing_opt_in", "products": "is_active", "orders": "is_test"}.get(entity)
    if flag and row[flag] not in NATIVE_BOOL[entity]:
        found.add("boolean_format")
    if entity in NATIVE and any(not NATIVE[entity].match(row[c]) for c in TIMESTAMPS[entity]):
        found.add("timestamp_format")
    if entity == "products" and not row["brand"]:
        found.add("missing_optional")
    return found


CHECKED_COSMETIC = {"mixed_case_code", "invalid_email", "email_format", "country_alpha3", "country_name",
                    "country_lowercase", "currency_symbol", "currency_lowercase", "boolean_format",
                    "timestamp_format"}


def check_world(root: Path) -> dict[str, Counter]:
    """Re-derive every manifest count from the files alone and compare; returns totals per entity."""
    totals: dict[str, Counter] = {e: Counter() for e in ENTITIES}
    everywhere: dict[str, set[tuple[str, ...]]] = {e: set() for e in ENTITIES}
    seen_products: set[str] = set()
    seen_orders: set[str] = set()
    all_manifests = manifests(root)
    for day_text, manifest in sorted(all_manifests.items()):
        day = date.fromisoformat(day_text)
        assert manifest["date"] == day_text
        for path in manifest["files"]:
            assert (root / path).is_file(), path
        parsed: dict[str, list[dict[str, str]]] = {}
        for entity in ENTITIES:
            counts = manifest["entities"][entity]
            rows: list[tuple[str, ...]] = []
            duplicates = 0
            for path in day_files(root, manifest, entity):
                header, file_rows = read_csv(path)
                assert header == list(COLUMNS[entity]), path
                assert write_csv([header, *file_rows]) == path.read_text(encoding="utf-8"), path
                assert all(len(r) == len(header) for r in file_rows), path
                assert manifest["files"][path.relative_to(root).as_posix()]["rows"] == len(file_rows)
                distinct = Counter(file_rows)
                duplicates += sum(n - 1 for n in distinct.values())
                rows.extend(distinct)
                # silver drops a row identical to any row landed before: only the injected copies may be
                assert not everywhere[entity] & distinct.keys(), (day, entity)
                everywhere[entity].update(distinct)
            assert counts["exact_duplicate"] == duplicates, (day, entity)
            assert counts["rows"] == len(rows) + duplicates, (day, entity)
            dict_rows = [dict(zip(COLUMNS[entity], r, strict=True)) for r in rows]
            parsed[entity] = dict_rows
            reasons = Counter(verdict(entity, r, day) for r in dict_rows)
            expected = {reason: reasons.get(reason, 0) for reason in QUARANTINE_REASONS[entity]}
            assert counts["quarantine"] == expected, (day, entity)
            assert reasons.get(None, 0) + sum(expected.values()) == len(rows)
            seen = Counter()
            for r in dict_rows:
                if verdict(entity, r, day) is None:
                    seen.update(cosmetic(entity, r))
            for kind in CHECKED_COSMETIC & set(COSMETIC_KINDS[entity]):
                assert counts["cosmetic"][kind] == seen.get(kind, 0), (day, entity, kind)
            if entity == "products":
                assert counts["cosmetic"]["missing_optional"] == seen.get("missing_optional", 0)
            totals[entity].update(rows=counts["rows"], duplicates=duplicates,
                                  quarantined=sum(expected.values()),
                                  **{f"q_{k}": v for k, v in expected.items()},
                                  **{f"c_{k}": v for k, v in counts["cosmetic"].items()})
        # referential dirt, counted on valid lines of orders that are not tests
        seen_products.update(r["product_id"] for r in parsed["products"])
        seen_orders.update(r["order_id"] for r in parsed["orders"])
        test_orders = {r["order_id"] for r in parsed["orders"] if r["is_test"].strip().lower() in TRUE}
        items = manifest["entities"]["order_items"]
        valid_lines = [r for r in parsed["order_items"] if verdict("order_items", r, day) is None]
        normal = [r for r in valid_lines if r["order_id"] not in test_orders]
        test_lines = sum(r["order_id"] in test_orders for r in parsed["order_items"])
        assert items["lines_of_test_orders"] == test_lines
        assert items["late_product"] == sum(r["product_id"] not in seen_products for r in normal), day
        assert items["late_order_header"] == sum(r["order_id"] not in seen_orders for r in normal), day
        totals["order_items"].update(late_product=items["late_product"], test_lines=test_lines,
                                     late_order_header=items["late_order_header"])
        # every clean timestamp lies within or before its partition day
        end_of_day = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        for entity in ("customers", "products", "orders", "payments"):
            for r in parsed[entity]:
                if verdict(entity, r, day) is None:
                    stamps = [parse_timestamp(r[c]) for c in TIMESTAMPS[entity]]
                    assert all(stamp < end_of_day for stamp in stamps), (day, entity, r)
        # malformed extra files are what the manifest says
        for item in manifest["malformed_files"]:
            data = (root / item["path"]).read_bytes()
            entity = item["entity"]
            if item["reason"] == "empty":
                assert data == b""
            elif item["reason"] == "not_utf8":
                with pytest.raises(UnicodeDecodeError):
                    data.decode("utf-8")
            else:
                header, *body = list(csv.reader(io.StringIO(data.decode("utf-8"))))
                if item["reason"] == "wrong_header":
                    assert header != list(COLUMNS[entity]) and len(header) == len(COLUMNS[entity])
                else:
                    assert header == list(COLUMNS[entity])
                    assert any(len(r) != len(header) for r in body)
            totals[entity]["malformed_files"] += 1
    return totals


# -- fixtures --------------------------------------------------------------------------------

START = date(2026, 11, 20)  # runs through Black Friday


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("dirty")
    result = generate(root, START, 12, orders_per_day=150, seed=7, dirty_rate=0.05, progress=False)
    return root, result


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("clean")
    result = generate(root, START, 8, orders_per_day=120, seed=11, dirty_rate=0.0, progress=False)
    return root, result


# -- determinism and continuation ------------------------------------------------------------


def test_same_arguments_same_bytes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    generate(first, date(2026, 3, 1), 4, orders_per_day=80, seed=3, progress=False)
    generate(second, date(2026, 3, 1), 4, orders_per_day=80, seed=3, progress=False)
    assert file_digest(first) == file_digest(second)
    other = tmp_path / "c"
    generate(other, date(2026, 3, 1), 4, orders_per_day=80, seed=4, progress=False)
    assert file_digest(other) != file_digest(first)


def test_worker_processes_write_the_same_files(tmp_path):
    one, forked, spawned = tmp_path / "one", tmp_path / "forked", tmp_path / "spawned"
    generate(one, date(2026, 5, 1), 4, orders_per_day=40, seed=5, progress=False, workers=1)
    generate(forked, date(2026, 5, 1), 4, orders_per_day=40, seed=5, progress=False, workers=2)
    # with another thread running, workers are spawned (fresh interpreters, other hash seeds)
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        generate(spawned, date(2026, 5, 1), 4, orders_per_day=40, seed=5, progress=False, workers=2)
    finally:
        release.set()
        thread.join()
    assert file_digest(one) == file_digest(forked) == file_digest(spawned)


def test_later_days_continue_the_same_world(tmp_path):
    at_once, in_steps = tmp_path / "at_once", tmp_path / "in_steps"
    start = date(2026, 1, 28)
    generate(at_once, start, 15, orders_per_day=60, seed=9, progress=False)
    generate(in_steps, start, 10, orders_per_day=60, seed=9, progress=False)
    generate(in_steps, start + timedelta(days=10), 5, orders_per_day=60, seed=9, progress=False)
    assert file_digest(in_steps) == file_digest(at_once)
    # a gap is fine too: the days in between are simply not written
    gap = tmp_path / "gap"
    generate(gap, start, 3, orders_per_day=60, seed=9, progress=False)
    generate(gap, start + timedelta(days=12), 3, orders_per_day=60, seed=9, progress=False)
    continued = {k: v for k, v in file_digest(at_once).items() if "20260209" in k or "20260210" in k}
    assert continued and all(file_digest(gap)[k] == v for k, v in continued.items())


def test_continuing_with_other_options_is_refused(tmp_path):
    generate(tmp_path, date(2026, 1, 1), 2, orders_per_day=50, seed=1, progress=False)
    # The message names what differs and how to continue.
    with pytest.raises(ValueError, match=r"another world \(--orders-per-day 51 here, 50 there\); continue it with "
                                         r"--seed 1 --orders-per-day 50 --dirty-rate 0.02,"):
        generate(tmp_path, date(2026, 1, 3), 1, orders_per_day=51, seed=1, progress=False)
    with pytest.raises(ValueError, match="first day is 2026-01-01, and --start 2025-12-20 would make 2025-12-20 the "
                                         "first; give --start 2026-01-01 or later"):
        generate(tmp_path, date(2025, 12, 20), 1, orders_per_day=50, seed=1, progress=False)
    # A manifest cut short names no world: refused, not a traceback nor a guess.
    (tmp_path / "_manifest" / "manifest_20260102.json").write_text('{"da', encoding="utf-8")
    with pytest.raises(WorldMismatch, match=r"manifest_20260102\.json is not a manifest the generator wrote"):
        generate(tmp_path, date(2026, 1, 3), 1, orders_per_day=50, seed=1, progress=False)


@pytest.mark.parametrize(("options", "message"), [
    ({"orders_per_day": MAX_ORDERS_PER_DAY + 1}, f"orders_per_day must be between 1 and {MAX_ORDERS_PER_DAY:,}"),
    ({"seed": -1}, f"seed must be between 0 and {MAX_SEED}"),
    ({"seed": MAX_SEED + 1}, f"seed must be between 0 and {MAX_SEED}"),
])
def test_the_generator_refuses_a_day_too_large_or_a_seed_it_would_wrap(tmp_path, options, message):
    """The Dagster simulator calls the generator with the world's options, past the CLI's checks."""
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, date(2026, 1, 1), 1, progress=False, **{"orders_per_day": 10, **options})
    assert not any(tmp_path.iterdir())


def test_files_it_did_not_write_are_never_replaced(tmp_path):
    """Real exports where the generator would write, or anywhere in its folder: refused in one
    line, and nothing written."""
    raw = tmp_path / "raw"
    env = ecom_env(raw, tmp_path / "warehouse")
    real = raw / relative_path("orders", date(2026, 9, 1))
    real.parent.mkdir(parents=True)
    real.write_text("order_id,customer_id\nREAL-1,C-9\n", encoding="utf-8")
    for day in ("2026-09-01", "2026-09-02"):  # on a day to write, or beside the days to write
        result = run_ecom("generate", "--start", day, "--days", "1", "--orders-per-day", "20", "--quiet", env=env,
                          check=False)
        assert result.returncode == 1, result.stderr
        # The folder came from the environment: the message names the setting.
        assert result.stderr.strip() == (
            f"error: {raw} holds files the generator did not write (orders/2026/09/01/orders_20260901.csv; it "
            "has no _manifest/ of its manifests); nothing was written: choose another output directory "
            "(ECOM_RAW_DIR), a new or empty one or one it wrote"), result.stderr
    assert real.read_text(encoding="utf-8") == "order_id,customer_id\nREAL-1,C-9\n"
    assert [p for p in raw.rglob("*") if p.is_file()] == [real]

    # In a folder it wrote, a file it did not write on a day to write.
    real.unlink()
    run_ecom("generate", "--start", "2026-09-01", "--days", "1", "--orders-per-day", "20", "--quiet", env=env)
    before = file_digest(raw)
    added = real.with_name("orders_20260901_part5.csv")
    added.write_text("order_id,customer_id\nREAL-1,C-9\n", encoding="utf-8")
    result = run_ecom("generate", "--start", "2026-09-01", "--days", "1", "--orders-per-day", "20", "--quiet",
                      "--out", str(raw), env=env, check=False)
    assert result.returncode == 1, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: ") and "Traceback" not in result.stderr
    assert "1 CSV file" in line and "orders/2026/09/01/orders_20260901_part5.csv" in line and "(--out)" in line
    added.unlink()
    assert file_digest(raw) == before

    # A file where a folder of the days goes: refused before the first file of the day, not halfway.
    blocker = raw / "payments" / "2026" / "09" / "02"
    blocker.write_text("mine\n")
    result = run_ecom("generate", "--start", "2026-09-01", "--days", "2", "--orders-per-day", "20", "--quiet",
                      "--out", str(raw), env=env, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (f"error: {blocker} is a file where the days to write need a folder; nothing was "
                                     "written: move it away, or choose another output directory (--out)")
    blocker.unlink()
    blocker.symlink_to(tmp_path / "nowhere")  # a broken link cannot be made a folder either
    result = run_ecom("generate", "--start", "2026-09-01", "--days", "2", "--orders-per-day", "20", "--quiet",
                      "--out", str(raw), env=env, check=False)
    assert result.returncode == 1 and f"error: {blocker} is a file where" in result.stderr, result.stderr
    blocker.unlink()
    assert file_digest(raw) == before

    # The top's `_` and `.` names are not exports: a warehouse kept in the raw folder, a repository.
    shutil.rmtree(raw)
    for kept in (raw / "_warehouse" / "metadata" / "bronze.sql", raw / ".git" / "HEAD"):
        kept.parent.mkdir(parents=True)
        kept.write_text("x\n")
    run_ecom("generate", "--start", "2026-09-01", "--days", "1", "--orders-per-day", "20", "--quiet", env=env)


def test_only_its_own_world_is_written_again(tmp_path):
    """Its own days come out byte for byte again; a file added to them, or another world, is refused."""
    start = date(2026, 3, 1)
    generate(tmp_path, start, 3, orders_per_day=30, seed=3, progress=False)
    before = file_digest(tmp_path)
    generate(tmp_path, start, 3, orders_per_day=30, seed=3, progress=False)
    generate(tmp_path, start + timedelta(days=1), 1, orders_per_day=30, seed=3, progress=False)
    assert file_digest(tmp_path) == before
    with pytest.raises(WorldMismatch, match=r"2026-03-01 and 2 more days of another world \(--seed 4 here, 3 there\); "
                                            r"nothing was written: continue it with --seed 3 .*--out"):
        generate(tmp_path, start, 3, orders_per_day=30, seed=4, progress=False)
    # the same options from an earlier first day make another world too
    with pytest.raises(WorldMismatch, match="2026-03-01 and 2 more days of a world whose first day is 2026-03-01, and "
                                            "--start 2026-02-28 would make 2026-02-28 the first; nothing was written: "
                                            "give --start 2026-03-01 or later"):
        generate(tmp_path, start - timedelta(days=1), 4, orders_per_day=30, seed=3, progress=False)
    assert file_digest(tmp_path) == before
    late = tmp_path / relative_path("payments", start + timedelta(days=1), part=9)
    late.write_text("payment_id,order_id\nP-LATE,O-LATE\n", encoding="utf-8")
    with pytest.raises(ForeignFiles, match=r"1 CSV file .*payments_20260302_part9\.csv.*--out"):
        generate(tmp_path, start, 3, orders_per_day=30, seed=3, progress=False)
    after = file_digest(tmp_path)
    assert after.pop(late.relative_to(tmp_path).as_posix()) and after == before


def test_days_past_the_last_loadable_day_are_a_usage_error(tmp_path):
    """Past the last day ClickHouse's Date holds the loader rejects every file: the CLI says so up front."""
    result = run_ecom("generate", "--start", "9999-12-30", "--days", "5", "--quiet",
                      env=ecom_env(tmp_path / "raw", tmp_path / "warehouse"), check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--start 9999-12-30 with --days 5" in result.stderr and str(LAST_DAY) in result.stderr
    assert not (tmp_path / "raw").exists()
    with pytest.raises(ValueError, match=str(LAST_DAY)):
        generate(tmp_path / "raw", LAST_DAY, 2, orders_per_day=1, progress=False)
    generate(tmp_path / "raw", LAST_DAY, 1, orders_per_day=1, progress=False)
    assert (tmp_path / "raw" / relative_path("orders", LAST_DAY)).is_file()


# -- the CSV contract ------------------------------------------------------------------------


def test_layout_and_headers(dirty):
    root, result = dirty
    assert [m["date"] for m in result["days"]] == [(START + timedelta(days=i)).isoformat() for i in range(12)]
    for manifest in manifests(root).values():
        ymd = manifest["date"].replace("-", "")
        for entity in ENTITIES:
            main = f"{entity}/{ymd[:4]}/{ymd[4:6]}/{ymd[6:]}/{entity}_{ymd}.csv"
            assert manifest["files"][main]["malformed"] is None
            assert (root / main).read_bytes().split(b"\n", 1)[0] == ",".join(COLUMNS[entity]).encode()
        for path in manifest["files"]:
            assert re.fullmatch(r"[a-z_]+/\d{4}/\d{2}/\d{2}/[a-z_]+_\d{8}(_part\d+)?\.csv", path)
        assert (root / "_manifest" / f"manifest_{ymd}.json").is_file()


def test_quoting_round_trips(dirty):
    root, _ = dirty
    text = (root / f"products/{START:%Y/%m/%d}/products_{START:%Y%m%d}.csv").read_text(encoding="utf-8")
    header, rows = read_csv(root / f"products/{START:%Y/%m/%d}/products_{START:%Y%m%d}.csv")
    names = [r[header.index("product_name")] for r in rows]
    assert any("," in n for n in names) and any("\n" in n for n in names) and any('"' in n for n in names)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    assert buffer.getvalue() == text
    assert "\r" not in text


def test_keys_look_like_source_keys(dirty):
    root, _ = dirty
    _, orders = read_csv(root / f"orders/{START:%Y/%m/%d}/orders_{START:%Y%m%d}.csv")
    _, items = read_csv(root / f"order_items/{START:%Y/%m/%d}/order_items_{START:%Y%m%d}.csv")
    _, payments = read_csv(root / f"payments/{START:%Y/%m/%d}/payments_{START:%Y%m%d}.csv")
    _, customers = read_csv(root / f"customers/{START:%Y/%m/%d}/customers_{START:%Y%m%d}.csv")
    assert all(re.fullmatch(r"O-\d{8}-\d{5,}", r[0]) for r in orders if r[0])
    assert all(re.fullmatch(r"C-\d{6,}", r[1]) for r in orders if r[1])
    assert all(re.fullmatch(r"P-\d{5,}", r[2]) for r in items if r[2])
    assert all(re.fullmatch(r"PAY-\d{8}-\d{6,}", r[0]) for r in payments if r[0])
    assert all(re.fullmatch(r"C-\d{6,}", r[0]) for r in customers if r[0])


# -- the manifest against the files ----------------------------------------------------------


def test_manifest_counts_match_the_files(dirty):
    root, result = dirty
    totals = check_world(root)
    # the dirt is really there, every kind of it
    for entity in ENTITIES:
        for reason in QUARANTINE_REASONS[entity]:
            assert totals[entity][f"q_{reason}"] > 0, (entity, reason)
        for kind in COSMETIC_KINDS[entity]:
            assert totals[entity][f"c_{kind}"] > 0, (entity, kind)
        assert totals[entity]["duplicates"] > 0 or entity == "products", entity
    assert totals["order_items"]["late_product"] > 0
    assert totals["order_items"]["late_order_header"] > 0
    assert totals["order_items"]["test_lines"] > 0
    assert sum(result["totals"][e]["rows"] for e in ENTITIES) == sum(totals[e]["rows"] for e in ENTITIES)
    # A test order's flag is spelt other ways too: the value that quarantines it must be read as any other.
    flags = {row[COLUMNS["orders"].index("is_test")] for path in root.glob("orders/*/*/*/*.csv")
             for row in read_csv(path)[1]}
    assert {flag for flag in flags if flag.strip().lower() in TRUE} - {"true"}, flags


def test_malformed_files_of_every_kind(tmp_path):
    """At a high dirty rate every day gets a malformed extra file; the checker still agrees."""
    generate(tmp_path, date(2026, 6, 1), 16, orders_per_day=40, seed=13, dirty_rate=0.5, progress=False)
    check_world(tmp_path)
    reasons = Counter(item["reason"] for manifest in manifests(tmp_path).values()
                      for item in manifest["malformed_files"])
    assert set(reasons) == {"wrong_column_count", "not_utf8", "empty", "wrong_header"}, reasons
    for manifest in manifests(tmp_path).values():
        for item in manifest["malformed_files"]:
            assert item["path"].endswith("_part2.csv")
            assert manifest["files"][item["path"]]["malformed"] == item["reason"]
    # Each row carries one quarantine defect at most: at 0.5 for each kind, an entity with four
    # kinds would have every row quarantined (no payment, no revenue). They stay under half.
    rows, quarantined = Counter(), Counter()
    for manifest in manifests(tmp_path).values():
        for entity, figures in manifest["entities"].items():
            rows[entity] += figures["rows"]
            quarantined[entity] += sum(n for reason, n in figures["quarantine"].items() if reason != "test_order")
    assert all(0 < quarantined[entity] <= rows[entity] / 2 for entity in ENTITIES), (quarantined, rows)


@pytest.mark.parametrize(("orders_per_day", "seed"), [(1, 1), (6, 4)])  # seed 4: no order on 2026-01-30
def test_days_without_orders(tmp_path, orders_per_day, seed):
    """A day may have no orders at all: its files have their headers and whatever else the day brings."""
    generate(tmp_path, date(2026, 1, 5), 30, orders_per_day=orders_per_day, seed=seed, dirty_rate=0.2,
             progress=False)
    check_world(tmp_path)
    days = manifests(tmp_path)
    assert len(days) == 30
    assert any(m["entities"]["order_items"]["rows"] == 0 for m in days.values())  # lines of the day's orders
    for manifest in days.values():
        assert {info["entity"] for info in manifest["files"].values()} == set(ENTITIES)


def test_clean_world_has_no_dirt(clean):
    root, result = clean
    totals = check_world(root)
    for entity in ENTITIES:
        assert totals[entity]["duplicates"] == 0
        assert totals[entity]["quarantined"] == 0
        assert totals[entity]["malformed_files"] == 0
        assert not any(v for k, v in totals[entity].items() if k.startswith("c_")), entity
    assert totals["order_items"]["late_product"] == 0
    assert totals["order_items"]["late_order_header"] == 0
    assert totals["order_items"]["test_lines"] == 0
    for manifest in result["days"]:
        assert manifest["malformed_files"] == []
        assert manifest["entities"]["orders"]["late_headers"] == 0
        for entity in ENTITIES:
            assert not any(manifest["entities"][entity]["cosmetic"].values())


# -- the business the data describes ---------------------------------------------------------


def test_values_are_in_the_seeds(dirty):
    root, _ = dirty
    statuses = {r["order_status"] for r in read_seed("order_statuses")}
    payment_statuses = {r["payment_status"] for r in read_seed("payment_statuses")}
    methods = {r["payment_method"] for r in read_seed("payment_methods")}
    taxonomy = {(r["category"], r["subcategory"]) for r in read_seed("product_categories")}
    seen = Counter()
    for manifest in manifests(root).values():
        day = date.fromisoformat(manifest["date"])
        for entity in ENTITIES:
            for path in day_files(root, manifest, entity):
                header, rows = read_csv(path)
                for values in set(rows):
                    row = dict(zip(header, values, strict=True))
                    if verdict(entity, row, day) is not None:
                        continue
                    if entity == "orders":
                        assert row["status"].strip().lower() in statuses
                        assert row["channel"].strip().lower() in set(world.CHANNELS)
                        code = row["shipping_country"].strip().upper()
                        assert code in ALPHA2 or code in ALPHA3 or code in NAMES
                        seen["currency", currency_code(row["currency"])] += 1
                        seen["status", row["status"].strip().lower()] += 1
                    elif entity == "payments":
                        assert row["status"].strip().lower() in payment_statuses
                        assert row["method"].strip().lower() in methods
                        seen["method", row["method"].strip().lower()] += 1
                        seen["payment_status", row["status"].strip().lower()] += 1
                    elif entity == "products":
                        pair = (row["category"].strip().lower(), row["subcategory"].strip().lower())
                        assert pair in taxonomy
                        seen["subcategory", pair[1]] += 1
                    elif entity == "customers":
                        assert row["segment"].strip().lower() in set(world.SEGMENTS)
                        code = row["country"].strip().upper()
                        assert code in ALPHA2 or code in ALPHA3 or code in NAMES
    # the world uses the whole of the reference data
    assert {c for kind, c in seen if kind == "currency"} == CURRENCIES
    assert {m for kind, m in seen if kind == "method"} == methods
    assert {s for kind, s in seen if kind == "status"} == statuses
    assert {s for kind, s in seen if kind == "payment_status"} == payment_statuses
    assert len({s for kind, s in seen if kind == "subcategory"}) == len(taxonomy)


def test_payments_match_their_orders(clean):
    """Captured amount = lines - order discount + shipping, in the order's currency."""
    root, _ = clean
    lines: dict[str, Decimal] = Counter()
    headers: dict[str, dict[str, str]] = {}
    payments: list[dict[str, str]] = []
    for manifest in manifests(root).values():
        for path in day_files(root, manifest, "order_items"):
            header, rows = read_csv(path)
            for r in rows:
                row = dict(zip(header, r, strict=True))
                discount = Decimal(row["line_discount"] or 0)
                lines[row["order_id"]] += int(row["quantity"]) * Decimal(row["unit_price"]) - discount
        for path in day_files(root, manifest, "orders"):
            header, rows = read_csv(path)
            for r in rows:
                headers[r[0]] = dict(zip(header, r, strict=True))
        for path in day_files(root, manifest, "payments"):
            header, rows = read_csv(path)
            payments.extend(dict(zip(header, r, strict=True)) for r in rows)
    checked = 0
    for payment in payments:
        order = headers[payment["order_id"]]
        expected = (lines[payment["order_id"]] - Decimal(order["order_discount"] or 0)
                    + Decimal(order["shipping_fee"] or 0))
        assert Decimal(payment["amount"]) == expected, payment
        assert payment["currency"] == order["currency"]
        checked += 1
    assert checked > 1000


def test_orders_move_forward_in_time(clean):
    root, _ = clean
    history: dict[str, list[tuple[str, str]]] = {}
    order = {"placed": 1, "paid": 2, "shipped": 3, "delivered": 4, "cancelled": 5, "returned": 6}
    for _day, manifest in sorted(manifests(root).items()):
        for path in day_files(root, manifest, "orders"):
            header, rows = read_csv(path)
            for r in rows:
                row = dict(zip(header, r, strict=True))
                history.setdefault(row["order_id"], []).append((row["updated_at"], row["status"]))
    moved = 0
    for versions in history.values():
        assert versions[0][1] == "placed"
        stamps = [v[0] for v in versions]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        steps = [order[v[1]] for v in versions]
        assert steps == sorted(steps) or steps[-1] == order["cancelled"]
        moved += len(versions) > 1
    assert moved > len(history) / 2


def test_weekly_rhythm_and_black_friday(dirty):
    root, _ = dirty
    placed = {d: m["entities"]["orders"]["new_orders"] for d, m in manifests(root).items()}
    black_friday = date(2026, 11, 27).isoformat()
    assert placed[black_friday] > 2 * placed[date(2026, 11, 20).isoformat()]  # the Friday before


def test_clean_customers_have_valid_emails_and_repeat_buyers(clean):
    root, _ = clean
    emails, buyers = [], Counter()
    for manifest in manifests(root).values():
        for path in day_files(root, manifest, "customers"):
            header, rows = read_csv(path)
            emails.extend(r[header.index("email")] for r in rows)
        for path in day_files(root, manifest, "orders"):
            header, rows = read_csv(path)
            buyers.update(r[1] for r in rows if r[header.index("status")] == "placed" and r[1])
    assert all(EMAIL.match(e) for e in emails)
    assert max(buyers.values()) > 1  # some customers come back


# -- seeds -------------------------------------------------------------------------------------


def test_seed_files_are_the_python_constants():
    for name, rows in world.seed_tables().items():
        assert (SEEDS / f"{name}.csv").read_text(encoding="utf-8") == world.render_seed(rows), name
    fx = read_seed("fx_rates_monthly")
    assert len(fx) == len(world.CURRENCIES) * len(world.fx_months()) == 8 * 21 * 12
    assert {r["usd_per_unit"] for r in fx if r["currency"] == "USD"} == {"1.000000"}
    assert all(r["month"].endswith("-01") for r in fx)


def test_seed_yaml_describes_every_seed_and_column():
    text = (SEEDS / "_seeds.yml").read_text(encoding="utf-8")
    for name, rows in world.seed_tables().items():
        assert f"- name: {name}\n" in text
        for column in rows[0]:
            assert f"- name: {column}\n" in text, (name, column)


def test_generator_categories_are_the_seed_taxonomy():
    from ecom import generate as generator

    seed = [(r["category"], r["subcategory"]) for r in read_seed("product_categories")]
    assert [(s.category, s.subcategory) for s in generator.SUBCATEGORIES] == seed
    assert list(generator.COUNTRY_CODES) == [r["country_code"] for r in COUNTRIES]
    assert list(generator.METHOD_CODES) == [r["payment_method"] for r in read_seed("payment_methods")]


# -- speed (reported, not asserted) ----------------------------------------------------------


def test_speed_report(tmp_path):
    started = time.perf_counter()
    result = generate(tmp_path, date(2026, 4, 1), 8, orders_per_day=1500, progress=False, workers=1)
    elapsed = time.perf_counter() - started
    lines = result["totals"]["order_items"]["rows"]
    print(f"\ngenerated {lines:,} order lines in {elapsed:.2f} s: {lines / elapsed:,.0f} lines/s")
    assert lines > 0


def test_order_lives_fit_in_the_lookback():
    """A day recomputes the orders of the previous LOOKBACK_DAYS days; no event may lie further out."""
    from ecom import generate as generator

    origin = generator._day_num(date(2026, 11, 1))
    w = generator._World(1, origin, origin + 3, 4000, 0.02)
    for day in range(origin, origin + 3):
        orders = w.day_orders(day)
        assert orders.event_offset.max() < generator.LOOKBACK_DAYS
        assert orders.pay_offset.max() < generator.LOOKBACK_DAYS


def test_a_run_stopped_midway_can_be_run_again(tmp_path, monkeypatch):
    """Stopped after a day's first files (Ctrl-C), the same run writes the day again, the same
    bytes as a run never stopped; another world is still refused there."""
    import ecom.generate as generator

    clean = tmp_path / "clean"
    generate(clean, date(2026, 3, 1), 2, orders_per_day=30, seed=5, progress=False, workers=1)
    stopped = tmp_path / "stopped"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(generator, "_payment_rows", interrupted)  # the day's last entity
        with pytest.raises(KeyboardInterrupt):
            generate(stopped, date(2026, 3, 1), 2, orders_per_day=30, seed=5, progress=False, workers=1)
    assert list(stopped.rglob("*.csv")), "the stopped run left files without a manifest"
    with pytest.raises(WorldMismatch, match="of another world"):
        generate(stopped, date(2026, 3, 1), 2, orders_per_day=30, seed=6, progress=False, workers=1)
    # A file put there since is not one the stopped run wrote: refused, and kept.
    added = stopped / "orders" / "2026" / "03" / "01" / "orders_20260301_part7.csv"
    added.write_text("order_id\nO-HAND\n", encoding="utf-8")
    with pytest.raises(ForeignFiles, match=r"orders_20260301_part7\.csv"):
        generate(stopped, date(2026, 3, 1), 2, orders_per_day=30, seed=5, progress=False, workers=1)
    assert added.read_text(encoding="utf-8") == "order_id\nO-HAND\n"
    added.unlink()
    generate(stopped, date(2026, 3, 1), 2, orders_per_day=30, seed=5, progress=False, workers=1)
    assert file_digest(stopped) == file_digest(clean)
