"""The bronze loader on the real embedded engine: exactly once, byte for byte, with lineage.

Every test writes its own small raw files (the `<entity>/YYYY/MM/DD/<entity>_YYYYMMDD.csv`
layout) and lands them into a fresh warehouse directory, so nothing depends on the generator.
Expected rows are always read back with Python's csv module, the reference RFC 4180 reader.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import clickhouse_connect
import pytest
import yaml
from clickhouse_connect.driver.client import Client

from conftest import BIN, ROOT, ecom_env
from ecom.config import Settings
from ecom.contract import COLUMNS, relative_path
from ecom.load import (
    LoadResult,
    RawFile,
    bronze_ddl,
    discover,
    inspect,
    latest_rejections,
    load,
    searched_by_load,
)
from ecom.warehouse import session

DAY = date(2026, 3, 1)
NEXT_DAY = date(2026, 3, 2)

# Values a real export holds and a careless loader mangles.
TRICKY_ORDERS = [
    ["O-1", "C-000123", "2026-03-01T10:00:00Z", " Paid ", "web", "usd", "4.99", "0", "SPRING,10", "US",
     "false", "2026-03-01 10:00:00"],
    ["O-2", "", "01/03/2026 11:30", "placed", "mobile_app", "€", "", "", "line one\nline two", "Deutschland",
     "no", "2026-03-01T11:30:00+01:00"],
    ["O-3", "C-000124", "2026-03-01 12:00:00", "shipped", "marketplace", "GBP", "0", "1.50",
     'say "hi", then leave', "gb ", "1", "2026-03-01 12:00:00"],
    ["O-4", "  C-000125", "2026-03-01 13:00:00", "PAID", "web", "$", "\\N", "NULL", "a\r\nb", "US", "0",
     "2026-03-01 13:00:00"],
    ["O-5", "C-000126", "2026-03-01 14:00:00", "paid", "web", "USD", "3", "0", "", "US", "true", ""],
]


def write_csv(raw_dir: Path, entity: str, day: date, rows: list[list[str]], *,
              header: list[str] | None = None, part: int = 1, lineterminator: str = "\n",
              bom: bool = False) -> Path:
    """Write one raw export the way a source system would (RFC 4180 quoting by the csv module)."""
    path = raw_dir / relative_path(entity, day, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=lineterminator)
    writer.writerow(list(COLUMNS[entity]) if header is None else header)
    writer.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))
    return path


def write_bytes(raw_dir: Path, entity: str, day: date, content: bytes) -> Path:
    path = raw_dir / relative_path(entity, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def csv_records(path: Path) -> list[dict[str, str]]:
    """The data records of a raw file as Python's csv module reads them (the reference)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def order_items(n: int, start: int = 1) -> list[list[str]]:
    return [[f"O-{i}", str(i % 5 + 1), f"P-{i % 7}", str(i % 3), "19.90", "" if i % 2 else "0.5"]
            for i in range(start, start + n)]


def settings_for(tmp_path: Path, raw_dir: Path | None = None) -> Settings:
    return Settings(raw_dir=raw_dir or tmp_path / "raw", chdb_path=tmp_path / "warehouse")


def land(settings: Settings, **kwargs) -> LoadResult:
    with session(settings) as client:
        return load(settings, client, **kwargs)


def query(settings: Settings, sql: str, **parameters) -> list[tuple]:
    with session(settings) as client:
        return client.query(sql, parameters=parameters).result_rows


def bronze_rows(settings: Settings, entity: str, relative: str) -> list[dict[str, str]]:
    """The source columns of one file's rows in bronze, in `_row_number` order."""
    columns = ", ".join(f"`{c}`" for c in COLUMNS[entity])
    rows = query(settings, f"SELECT {columns} FROM bronze.{entity} WHERE _source_file = {{f:String}} "
                           "ORDER BY _row_number", f=relative)
    return [dict(zip(COLUMNS[entity], row, strict=True)) for row in rows]


def log_rows(settings: Settings) -> dict[str, list[dict]]:
    """bronze.ingest_log by file path, oldest first."""
    rows = query(settings, "SELECT file_path, status, reason, error, rows, bytes, sha256, batch_id, version, "
                           "file_date FROM bronze.ingest_log ORDER BY finished_at")
    names = ("file_path", "status", "reason", "error", "rows", "bytes", "sha256", "batch_id", "version",
             "file_date")
    by_path: dict[str, list[dict]] = {}
    for row in rows:
        record = dict(zip(names, row, strict=True))
        by_path.setdefault(record["file_path"], []).append(record)
    return by_path


def rows_from_file(settings: Settings, relative_path: str) -> int:
    """Rows of one raw file in any bronze table."""
    union = " UNION ALL ".join(f"SELECT count() AS n FROM bronze.{entity} WHERE _source_file = {{f:String}}"
                               for entity in COLUMNS)
    return query(settings, f"SELECT sum(n) FROM ({union})", f=relative_path)[0][0]


def relative(path: Path, raw_dir: Path) -> str:
    return path.relative_to(raw_dir).as_posix()


def test_rows_land_exactly_as_exported_with_lineage(tmp_path):
    settings = settings_for(tmp_path)
    raw = settings.raw_dir
    files = {
        "orders": write_csv(raw, "orders", DAY, TRICKY_ORDERS),
        "order_items": write_csv(raw, "order_items", DAY, order_items(40), lineterminator="\r\n"),
        "payments": write_csv(raw, "payments", NEXT_DAY, [
            ["PAY-1", "O-1", "2026-03-02 09:00:00", "card", "104.99", "USD", "captured",
             "2026-03-02 09:00:00"],
            ["PAY-2", "O-2", "2026-03-02 09:05:00", " PayPal", "1,234.50", "eur", "authorized", ""],
        ]),
    }

    result = land(settings)

    assert [o.status for o in result.outcomes] == ["landed"] * 3, result.outcomes
    assert result.exit_code == 0
    log = log_rows(settings)
    for entity, path in files.items():
        rel = relative(path, raw)
        expected = csv_records(path)
        assert bronze_rows(settings, entity, rel) == expected, entity
        (entry,) = log[rel]
        assert entry["status"] == "landed"
        assert entry["rows"] == len(expected)
        assert entry["bytes"] == path.stat().st_size
        assert entry["version"] == 1
        lineage = query(settings, "SELECT _row_number, _file_sha256, _file_date, _batch_id, _ingested_at "
                                  f"FROM bronze.{entity} WHERE _source_file = {{f:String}} "
                                  "ORDER BY _row_number", f=rel)
        assert [r[0] for r in lineage] == list(range(1, len(expected) + 1))
        assert {r[1] for r in lineage} == {hashlib.sha256(path.read_bytes()).hexdigest()} == {entry["sha256"]}
        year, month, day = (int(part) for part in path.parts[-4:-1])
        assert {r[2] for r in lineage} == {date(year, month, day)}
        assert {r[3] for r in lineage} == {entry["batch_id"]}
        assert all(r[4] is not None for r in lineage)
    # The values a loader typically bends, checked one by one.
    orders = {row["order_id"]: row for row in bronze_rows(settings, "orders", relative(files["orders"], raw))}
    assert orders["O-1"]["status"] == " Paid "
    assert orders["O-1"]["coupon_code"] == "SPRING,10"
    assert orders["O-2"]["customer_id"] == "" and orders["O-2"]["shipping_fee"] == ""
    assert orders["O-2"]["coupon_code"] == "line one\nline two"
    assert orders["O-3"]["coupon_code"] == 'say "hi", then leave'
    assert orders["O-3"]["shipping_country"] == "gb "
    assert orders["O-4"]["customer_id"] == "  C-000125"
    assert (orders["O-4"]["shipping_fee"], orders["O-4"]["order_discount"]) == ("\\N", "NULL")
    assert orders["O-4"]["coupon_code"] == "a\r\nb"


def test_row_numbers_follow_file_order_in_a_large_file(tmp_path):
    """150,000 records with quoted newlines: the engine parses a file this size in segments."""
    settings = settings_for(tmp_path)
    rows = [[f"O-{i}", str(i), "P\n1" if i % 1000 == 0 else "P-1", "1", "2.00", ""]
            for i in range(1, 150_001)]
    path = write_csv(settings.raw_dir, "order_items", DAY, rows)

    (outcome,) = land(settings).outcomes

    assert (outcome.status, outcome.rows) == ("landed", len(rows))
    misplaced = query(settings, "SELECT count() FROM bronze.order_items "
                                "WHERE line_number != toString(_row_number)")
    assert misplaced == [(0,)]
    assert query(settings, "SELECT uniqExact(_source_file), max(_row_number) FROM bronze.order_items") == [
        (1, len(rows))
    ]
    assert path.exists()


def test_second_load_lands_nothing_and_says_why(tmp_path):
    settings = settings_for(tmp_path)
    write_csv(settings.raw_dir, "orders", DAY, TRICKY_ORDERS)
    write_csv(settings.raw_dir, "order_items", DAY, order_items(10))
    first = land(settings)
    assert len(first.landed) == 2

    second = land(settings)

    assert second.landed == [] and second.rejected == []
    assert [(o.status, o.reason, o.detail) for o in second.outcomes] == [
        ("skipped", "already_landed", "already landed")
    ] * 2
    assert second.exit_code == 0
    assert query(settings, "SELECT count() FROM bronze.order_items") == [(10,)]
    assert query(settings, "SELECT count() FROM bronze.ingest_log") == [(2,)]


def test_changed_file_at_the_same_path_lands_as_version_2(tmp_path):
    settings = settings_for(tmp_path)
    path = write_csv(settings.raw_dir, "order_items", DAY, order_items(3))
    first_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    land(settings)
    write_csv(settings.raw_dir, "order_items", DAY, order_items(5, start=100))

    (outcome,) = land(settings).outcomes

    assert (outcome.status, outcome.rows) == ("landed", 5)
    assert "version 2" in outcome.detail
    rel = relative(path, settings.raw_dir)
    versions = log_rows(settings)[rel]
    assert [(v["version"], v["rows"], v["status"]) for v in versions] == [(1, 3, "landed"), (2, 5, "landed")]
    assert versions[1]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() != first_sha
    assert versions[0]["batch_id"] != versions[1]["batch_id"]
    # Bronze is append-only: both versions are there, each under its own batch.
    by_batch = dict(query(settings, "SELECT _batch_id, count() FROM bronze.order_items GROUP BY _batch_id"))
    assert by_batch == {versions[0]["batch_id"]: 3, versions[1]["batch_id"]: 5}

    # The first export put back: a change like any other, so it lands as version 3 (the
    # warehouse follows the file that is there now), and only once.
    write_csv(settings.raw_dir, "order_items", DAY, order_items(3))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first_sha
    (outcome,) = land(settings).outcomes
    assert (outcome.status, outcome.rows) == ("landed", 3) and "version 3" in outcome.detail
    (outcome,) = land(settings).outcomes
    assert (outcome.status, outcome.reason) == ("skipped", "already_landed")
    assert [v["sha256"] for v in log_rows(settings)[rel]] == [first_sha, versions[1]["sha256"], first_sha]


def test_same_content_at_another_path_is_rejected_and_logged_once(tmp_path):
    settings = settings_for(tmp_path)
    original = write_csv(settings.raw_dir, "order_items", DAY, order_items(4))
    land(settings)
    copy = settings.raw_dir / relative_path("order_items", NEXT_DAY)
    copy.parent.mkdir(parents=True)
    shutil.copyfile(original, copy)

    result = land(settings)

    (outcome,) = [o for o in result.outcomes if o.file.path == copy]
    assert (outcome.status, outcome.reason) == ("rejected", "duplicate_content")
    assert relative(original, settings.raw_dir) in outcome.detail
    assert result.exit_code == 3
    (entry,) = log_rows(settings)[relative(copy, settings.raw_dir)]
    assert (entry["status"], entry["reason"], entry["rows"]) == ("rejected", "duplicate_content", 0)
    assert query(settings, "SELECT count() FROM bronze.order_items") == [(4,)]
    again = land(settings)
    assert again.rejected == [] and again.exit_code == 0
    assert len(log_rows(settings)[relative(copy, settings.raw_dir)]) == 1


def test_header_only_files_land_zero_rows(tmp_path):
    """Quiet days export a header and nothing else; each day's file is still landed and logged."""
    settings = settings_for(tmp_path)
    first = write_csv(settings.raw_dir, "payments", DAY, [])
    second = write_csv(settings.raw_dir, "payments", NEXT_DAY, [])
    assert first.read_bytes() == second.read_bytes()

    result = land(settings)

    assert [(o.status, o.rows) for o in result.outcomes] == [("landed", 0), ("landed", 0)]
    log = log_rows(settings)
    for path in (first, second):
        assert [(e["status"], e["rows"]) for e in log[relative(path, settings.raw_dir)]] == [("landed", 0)]
    assert query(settings, "SELECT count() FROM bronze.payments") == [(0,)]
    assert land(settings).landed == []


def test_bom_and_crlf_land_clean(tmp_path):
    settings = settings_for(tmp_path)
    path = write_csv(settings.raw_dir, "order_items", DAY, order_items(6), lineterminator="\r\n", bom=True)
    trailing_blank = write_bytes(settings.raw_dir, "order_items", NEXT_DAY,
                                 b"order_id,line_number,product_id,quantity,unit_price,line_discount\r\n"
                                 b"O-9,1,P-9,2,5.00,\r\n\r\n")

    result = land(settings)

    assert [(o.status, o.rows) for o in result.outcomes] == [("landed", 6), ("landed", 1)], result.outcomes
    landed = bronze_rows(settings, "order_items", relative(path, settings.raw_dir))
    assert landed == csv_records(path)
    assert not any("\r" in value or "\ufeff" in value for row in landed for value in row.values())
    assert bronze_rows(settings, "order_items", relative(trailing_blank, settings.raw_dir)) == [
        {"order_id": "O-9", "line_number": "1", "product_id": "P-9", "quantity": "2", "unit_price": "5.00",
         "line_discount": ""}
    ]


def test_reordered_columns_land_in_the_right_columns(tmp_path):
    settings = settings_for(tmp_path)
    header = list(reversed(COLUMNS["payments"]))
    values = {"payment_id": "PAY-7", "order_id": "O-7", "payment_ts": "2026-03-01 08:00:00", "method": "card",
              "amount": "10.00", "currency": "SEK", "status": "captured", "updated_at": "2026-03-01 08:01:00"}
    path = write_csv(settings.raw_dir, "payments", DAY, [[values[c] for c in header]], header=header)

    (outcome,) = land(settings).outcomes

    assert outcome.status == "landed"
    assert bronze_rows(settings, "payments", relative(path, settings.raw_dir)) == [values]


def test_malformed_files_are_rejected_with_reasons_and_kept(tmp_path):
    settings = settings_for(tmp_path)
    raw = settings.raw_dir
    header = ",".join(COLUMNS["order_items"]).encode()
    products_header = ",".join(COLUMNS["products"]).encode()
    good = write_csv(raw, "orders", DAY, TRICKY_ORDERS)
    bad = {
        "wrong_header": write_csv(raw, "customers", DAY, [["C-1"] * 12],
                                  header=list(COLUMNS["customers"])[:-1]),
        "not_utf8": write_bytes(raw, "products", DAY, ",".join(COLUMNS["products"]).encode()
                                + b"\nP-1,SKU-1,Caf\xe9 cr\xe8me,food,coffee,Acme,1,2,EUR,true,2026-03-01\n"),
        "empty": write_bytes(raw, "payments", DAY, b""),
        "parse_error": write_bytes(raw, "order_items", DAY, header + b"\nO-1,1,P-1,1,2.00,\nO-2,1,P-2,1\n"),
        "unterminated quote": write_bytes(raw, "order_items", NEXT_DAY,
                                          header + b'\nO-1,1,P-1,1,2.00,\nO-2,1,"P-2,1,2.00,\n'),
        "parse_error at the end": write_bytes(raw, "order_items", date(2026, 3, 5),
                                              header + b"\nO-1,1,P-1,1,2.00,0\nO-2,1,P-2,1"),
        "not_utf8 after a BOM": write_bytes(raw, "products", date(2026, 3, 4), b"\xef\xbb\xbf" + products_header
                                            + b"\n\xe9P-1,SKU-1,Cafe,food,coffee,Acme,1,2,EUR,true,2026-03-01\n"),
    }
    misnamed = raw / "orders" / "2026" / "03" / "02" / "orders_2026-03-02.csv"
    misnamed.parent.mkdir(parents=True)
    shutil.copyfile(good, misnamed)
    bad["bad_name"] = misnamed
    link = raw / relative_path("customers", NEXT_DAY)
    link.parent.mkdir(parents=True)
    link.symlink_to(good)
    bad["symlink"] = link
    bad["bad_name at the top"] = raw / "order_items_20260301.csv"
    bad["bad_name at the top"].write_bytes(header + b"\nO-9,1,P-1,1,2.00,0\n")
    misspelt = raw / "Order_Items" / "2026" / "03" / "01" / "order_items_20260301.csv"
    misspelt.parent.mkdir(parents=True)
    misspelt.write_bytes(header + b"\nO-8,1,P-1,1,2.00,0\n")
    bad["bad_name in a misspelt folder"] = misspelt
    # Days without their entity folder, a compressed export, a day no Date can hold: each is
    # reported, not passed over. A temporary name, hidden files and `_` folders at the top are
    # not searched.
    no_entity = raw / "2026" / "03" / "01" / "order_items_20260301.csv"
    no_entity.parent.mkdir(parents=True)
    no_entity.write_bytes(header + b"\nO-7,1,P-1,1,2.00,0\n")
    bad["bad_name without its entity folder"] = no_entity
    compressed = raw / relative_path("order_items", DAY)
    compressed = compressed.with_name(compressed.name + ".gz")
    compressed.write_bytes(b"\x1f\x8b")
    bad["bad_name compressed"] = compressed
    out_of_range = raw / "order_items" / "2200" / "01" / "01" / "order_items_22000101.csv"
    out_of_range.parent.mkdir(parents=True)
    out_of_range.write_bytes(header + b"\nO-6,1,P-1,1,2.00,0\n")
    bad["bad_name out of range"] = out_of_range
    no_such_day = raw / "order_items" / "2026" / "02" / "30" / "order_items_20260230.csv"
    no_such_day.parent.mkdir(parents=True)
    no_such_day.write_bytes(header + b"\nO-7,1,P-1,1,2.00,0\n")
    bad["bad_name not a calendar day"] = no_such_day
    for ignored in (raw / "_archive" / "order_items_20260301.csv", raw / ".cache" / "x.csv",
                    raw / "order_items" / ".DS_Store", compressed.with_suffix(".partial")):
        ignored.parent.mkdir(parents=True, exist_ok=True)
        ignored.write_bytes(header + b"\n")
    # The engine quotes the broken row in its error: words of a failing disk there are the file's.
    bad["parse_error quoting a disk error"] = write_bytes(
        raw, "order_items", date(2026, 3, 3), header + b"\nO-3,1,P-1,1,2.00,0\nO-3,2,No space left on device\n")
    fifo = raw / relative_path("products", NEXT_DAY)
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    bad["unreadable"] = fifo

    with feeding_if_opened(fifo):
        result = land(settings)

    assert result.exit_code == 3
    outcomes = {o.file.path: o for o in result.outcomes}
    assert (outcomes[good].status, outcomes[good].rows) == ("landed", len(TRICKY_ORDERS))
    log = log_rows(settings)
    for expected_reason, path in bad.items():
        reason = expected_reason.split()[0] if expected_reason != "unterminated quote" else "parse_error"
        assert (outcomes[path].status, outcomes[path].reason) == ("rejected", reason), outcomes[path]
        (entry,) = log[relative(path, raw)]
        assert (entry["status"], entry["reason"], entry["rows"]) == ("rejected", reason, 0)
        assert entry["error"], "the log says what is wrong"
        assert os.path.lexists(path), "a rejected file stays for inspection"
        assert rows_from_file(settings, relative(path, raw)) == 0
    assert "(line 2) is not UTF-8" in log[relative(bad["not_utf8"], raw)][0]["error"]
    unterminated = log[relative(bad["unterminated quote"], raw)][0]["error"]
    assert "(at data row 2)" in unterminated and "a quote that never closes" in unterminated, unterminated
    assert "Buffer has gone" not in unterminated, unterminated
    short = log[relative(bad["parse_error at the end"], raw)][0]["error"]  # no quote: no word of one
    assert "(at data row 2)" in short and "quote" not in short, short
    after_bom = log[relative(bad["not_utf8 after a BOM"], raw)][0]["error"]  # the BOM's 3 bytes count
    assert f"byte {3 + len(products_header) + 1} (line 2) is not UTF-8" in after_bom, after_bom
    parse_error = log[relative(bad["parse_error"], raw)][0]["error"]
    assert "(at data row 2)" in parse_error and "less columns than expected" in parse_error, parse_error
    assert parse_error.endswith("fix that row and export the file again")
    assert log[relative(bad["bad_name"], raw)][0]["file_date"] is None
    [out_of_range] = log[relative(bad["bad_name out of range"], raw)]
    assert out_of_range["file_date"] is None
    assert "its day 2200-01-01 is outside 1970-01-01..2149-06-06" in out_of_range["error"]
    assert "its day 20260230 is not a day of the calendar" in log[relative(no_such_day, raw)][0]["error"]
    assert "is compressed" in log[relative(bad["bad_name compressed"], raw)][0]["error"]
    assert not any(part.startswith((".", "_")) for path in log for part in Path(path).parts)

    # A second load neither lands nor logs them again.
    again = land(settings)
    assert again.landed == [] and again.rejected == []
    assert query(settings, "SELECT count() FROM bronze.ingest_log WHERE status = 'rejected'") == [(len(bad),)]


@contextmanager
def feeding_if_opened(fifo: Path) -> Iterator[None]:
    """Should the loader open the named pipe, write to it so the test fails instead of hanging."""
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.2):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # nobody reading: as it should be
                continue
            os.write(fd, b"not,a,csv\n")
            os.close(fd)
            return

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_a_file_without_read_permission_is_rejected_as_unreadable(tmp_path):
    # `ecom load` as a user would run it; as root, without the capabilities that let root read
    # any file (setpriv), so that the file's permissions apply.
    from ecom.soak import unprivileged_prefix

    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("root reads any file, and setpriv is not there to drop that: no permission-denied file")
    settings = settings_for(tmp_path)
    path = write_csv(settings.raw_dir, "orders", DAY, TRICKY_ORDERS)
    path.chmod(0)
    try:
        loaded = subprocess.run([*prefix, str(BIN / "ecom"), "load", "--quiet"], capture_output=True, text=True,
                                env=ecom_env(settings.raw_dir, settings.chdb_path), timeout=300)
    finally:
        path.chmod(0o644)
    assert loaded.returncode == 3, loaded.stdout + loaded.stderr  # 3: a file was rejected
    logged = query(settings, "SELECT status, reason, error FROM bronze.ingest_log WHERE file_path = {p:String}",
                   p=relative(path, settings.raw_dir))
    assert [(status, reason) for status, reason, _ in logged] == [("rejected", "unreadable")], logged
    assert "fix its permissions" in logged[0][2]


@contextmanager
def small_block_client(settings: Settings) -> Iterator[Client]:
    """A client that inserts in blocks of 1,000 rows, so a failing INSERT has already written parts."""
    settings.chdb_path.mkdir(parents=True, exist_ok=True)
    client = clickhouse_connect.get_client(
        interface="chdb", path=str(settings.chdb_path),
        settings={"max_block_size": 1000, "min_insert_block_size_rows": 1000,
                  "min_insert_block_size_bytes": 0},
    )
    try:
        yield client
    finally:
        client.close()


def test_a_file_rejected_mid_parse_leaves_no_rows_behind(tmp_path):
    settings = settings_for(tmp_path)
    good = write_csv(settings.raw_dir, "order_items", DAY, order_items(5))
    # A quoted value: the inspection cannot count its fields, so it lands in one INSERT with `good`.
    broken = write_csv(settings.raw_dir, "order_items", NEXT_DAY,
                       [*order_items(20_000), ["O-x", "1", "P-1,2"], ["O-y", "1", "P-1"]])

    with small_block_client(settings) as client:
        result = load(settings, client)
        left = client.query("SELECT _source_file, count() FROM bronze.order_items "
                            "GROUP BY _source_file").result_rows

    outcomes = {o.file.path: o for o in result.outcomes}
    assert (outcomes[broken].status, outcomes[broken].reason) == ("rejected", "parse_error")
    assert "row" in outcomes[broken].detail.lower()
    assert left == [(relative(good, settings.raw_dir), 5)]


def test_a_file_with_a_ragged_record_lands_alone_so_its_neighbours_land_once(tmp_path):
    settings = settings_for(tmp_path)
    raw = settings.raw_dir
    header = ",".join(COLUMNS["order_items"]).encode()
    days = [date(2026, 3, d) for d in (1, 2, 3)]
    before = write_bytes(raw, "order_items", days[0], header + b"\nO-1,1,P-1,1,2.00,\nO-2,1,P-2,1,2.00,0.5")
    ragged = write_bytes(raw, "order_items", days[1], header + b"\nO-3,1,P-1,1,2.00,\nO-4,1,P-2,1,2.00,0,extra\n")
    after = write_csv(raw, "order_items", days[2], order_items(3), lineterminator="\r\n")
    quoted = write_csv(raw, "orders", days[0], TRICKY_ORDERS)  # fields cannot be counted: not ragged
    files = [(before, "order_items", days[0]), (ragged, "order_items", days[1]),
             (after, "order_items", days[2]), (quoted, "orders", days[0])]
    assert [inspect(RawFile(p, relative(p, raw), e, d)).ragged for p, e, d in files] == [False, True, False, False]

    result = land(settings)

    outcomes = {o.file.path: o for o in result.outcomes}
    assert (outcomes[ragged].status, outcomes[ragged].reason) == ("rejected", "parse_error")
    assert [outcomes[p].rows for p in (before, after)] == [2, 3]
    # Landed in three INSERTs in file order. Had the ragged file failed an INSERT of all three, the
    # other two would have landed again after it, with a later start.
    started = dict(query(settings, "SELECT file_path, started_at FROM bronze.ingest_log"))
    assert started[relative(before, raw)] < started[relative(ragged, raw)] < started[relative(after, raw)]


@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_a_space_or_tab_at_a_field_edge_marks_a_file_padded_even_across_read_chunks(tmp_path, monkeypatch, chunk):
    # Files without one land with the engine's trimming on: it cannot change a byte of them.
    monkeypatch.setattr("ecom.load._CHUNK", chunk)
    header = ",".join(COLUMNS["order_items"]).encode() + b"\n"
    clean = b"O-1,1,P-1,1,2.00,\nO-2,2,P-2,1,2.00,0.5\r\n"
    cases = {
        b"": False,
        clean: False,
        b'O-1,1,P-1,1,2.00,"a b"\n': False,  # a space inside a value is kept either way
        b"O-1,1,P-1,1, 2.00,\n": True,
        b"O-1,1,P-1,1,2.00 ,\n": True,
        b"O-1,1,P-1,1,2.00,0.5 \n": True,
        b"O-1,1,P-1,1,2.00,0.5 \r\n": True,
        b" O-1,1,P-1,1,2.00,\n": True,
        b"O-1,1,P-1,1,2.00,\n O-2,1,P-1,1,2.00,\n": True,
        b"O-1,1,P-1,1,2.00,0.5 ": True,  # at the very end of the file
        b"O-1,1,P-1,1\t,2.00,\n": True,
        b'O-1,1,P-1,1,2.00, "0.5"\n': True,
        b'O-1,1,P-1,1,2.00,"0.5" \n': True,
    }
    for i, (body, padded) in enumerate(cases.items()):
        day = date(2026, 3, 1 + i)
        path = write_bytes(tmp_path, "order_items", day, header + body)
        assert inspect(RawFile(path, relative(path, tmp_path), "order_items", day)).padded is padded, body


def test_a_group_with_one_padded_file_keeps_every_space(tmp_path):
    settings = settings_for(tmp_path)
    raw = settings.raw_dir
    clean = write_csv(raw, "order_items", DAY, order_items(3))
    padded = write_csv(raw, "order_items", NEXT_DAY, [["O-9", " 1", "P-1 ", "\t2", "19.90", "0.5 "]])
    other_day = write_csv(raw, "order_items", date(2026, 3, 3), order_items(2, start=10))

    result = land(settings)

    assert [o.status for o in result.outcomes] == ["landed"] * 3, result.outcomes
    # One INSERT for the three files of the year, so one setting for all of them.
    assert len({r[0] for r in query(settings, "SELECT started_at FROM bronze.ingest_log")}) == 1
    for path in (clean, padded, other_day):
        assert bronze_rows(settings, "order_items", relative(path, raw)) == csv_records(path)
    assert bronze_rows(settings, "order_items", relative(padded, raw))[0]["product_id"] == "P-1 "


def test_rows_of_an_interrupted_load_are_removed_by_the_next(tmp_path):
    settings = settings_for(tmp_path)
    write_csv(settings.raw_dir, "order_items", DAY, order_items(3))
    land(settings)
    columns = ", ".join(COLUMNS["order_items"])
    with session(settings) as client:
        # What a load killed between its INSERT and its ingest-log row leaves behind.
        client.command(
            f"INSERT INTO bronze.order_items ({columns}, _source_file, _row_number, _file_sha256, "
            "_file_date, _batch_id, _ingested_at) SELECT 'O-crash', '1', 'P-1', '1', '1.00', '', "
            "'order_items/2026/03/02/order_items_20260302.csv', number + 1, 'abc', '2026-03-02', "
            "'batch-that-never-finished', now64(3) FROM numbers(7)"
        )
        assert client.command("SELECT count() FROM bronze.order_items") == 10

    result = land(settings)

    assert result.orphan_rows_removed == 7
    assert query(settings, "SELECT count(), countIf(_batch_id = 'batch-that-never-finished') "
                           "FROM bronze.order_items") == [(3, 0)]


def test_a_file_that_disappears_during_a_load_is_rejected_as_such(tmp_path):
    settings = settings_for(tmp_path)
    gone = write_csv(settings.raw_dir, "order_items", DAY, order_items(2))
    kept = write_csv(settings.raw_dir, "order_items", NEXT_DAY, order_items(3))
    files = discover(settings.raw_dir)
    gone.unlink()

    result = land(settings, files=files)

    outcomes = {o.file.path: o for o in result.outcomes}
    assert (outcomes[kept].status, outcomes[kept].rows) == ("landed", 3)
    assert (outcomes[gone].status, outcomes[gone].reason) == ("rejected", "unreadable")
    assert "disappeared" in outcomes[gone].detail


def test_a_raw_directory_with_glob_characters_in_its_name(tmp_path):
    """The engine's file() expands `{a,b}`, `*` and `?`; the loader must read the path literally."""
    settings = settings_for(tmp_path, raw_dir=tmp_path / "exports{2026}")
    path = write_csv(settings.raw_dir, "order_items", DAY, order_items(4))

    (outcome,) = land(settings).outcomes

    assert (outcome.status, outcome.rows) == ("landed", 4)
    assert bronze_rows(settings, "order_items", relative(path, settings.raw_dir)) == csv_records(path)


def test_start_and_end_pick_the_days_to_land(tmp_path):
    settings = settings_for(tmp_path)
    for offset in range(3):
        write_csv(settings.raw_dir, "order_items", date(2026, 3, 1 + offset), order_items(offset + 1))

    result = land(settings, start=date(2026, 3, 2), end=date(2026, 3, 2))

    assert [(o.file.file_date, o.rows) for o in result.outcomes] == [(date(2026, 3, 2), 2)]
    assert query(settings, "SELECT DISTINCT _file_date FROM bronze.order_items") == [(date(2026, 3, 2),)]


def test_a_dated_load_searches_only_its_days_folders_and_misnamed_ones(tmp_path):
    settings = settings_for(tmp_path)
    for day in (date(2025, 12, 31), date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2), date(2026, 4, 1)):
        write_csv(settings.raw_dir, "order_items", day, order_items(1))
    misplaced = settings.raw_dir / "order_items" / "exports" / "order_items_20260301.csv"
    misplaced.parent.mkdir()
    misplaced.write_text("order_id\n")
    start, end = date(2026, 3, 1), date(2026, 3, 1)

    everything = discover(settings.raw_dir)
    dated = discover(settings.raw_dir, start, end)

    assert dated == [f for f in everything if f.file_date is None or start <= f.file_date <= end]
    assert {f.relative for f in dated} == {"order_items/2026/03/01/order_items_20260301.csv",
                                           "order_items/exports/order_items_20260301.csv"}


def test_every_file_gets_its_own_ingestion_time_so_it_and_the_row_number_name_a_row(tmp_path):
    """Silver tells the exact duplicates by (`_ingested_at`, `_row_number`): every file, in one
    INSERT with others or in the next load, gets one `_ingested_at` of its own."""
    settings = settings_for(tmp_path)
    for day, lines in ((DAY, 3), (NEXT_DAY, 4)):  # one year: one INSERT for both files
        write_csv(settings.raw_dir, "order_items", day, order_items(lines))
    land(settings)
    write_csv(settings.raw_dir, "order_items", date(2026, 3, 3), order_items(5))
    land(settings)

    times = query(settings, "SELECT _source_file, groupUniqArray(_ingested_at) FROM bronze.order_items "
                            "GROUP BY _source_file")
    assert len(times) == 3
    assert all(len(per_file) == 1 for _, per_file in times), times
    assert len({per_file[0] for _, per_file in times}) == 3, times


def test_parts_of_a_day_land_in_their_numbers_order(tmp_path):
    # Ingestion order settles ties of updated_at in silver: part 10 is the later export, not part 2.
    settings = settings_for(tmp_path)
    for part in (1, 2, 10, 11):
        write_csv(settings.raw_dir, "order_items", DAY, order_items(1, start=part), part=part)
    land(settings)
    landed = query(settings, "SELECT _source_file FROM bronze.order_items ORDER BY _ingested_at")
    assert [Path(path).stem.rpartition("_")[2] for (path,) in landed] == ["20260301", "part2", "part10", "part11"]


def test_a_load_lands_after_every_earlier_ingestion_time_even_one_ahead_of_the_clock(tmp_path):
    """Files of a load get `_ingested_at` 1 ms apart from the engine's clock, so a load of many
    small files runs ahead of it. Silver reads "newer than the newest `_ingested_at` it has": the
    next load must start after the newest time in bronze, clock or not."""
    settings = settings_for(tmp_path)
    write_csv(settings.raw_dir, "order_items", DAY, order_items(2))
    land(settings)
    with session(settings) as client:  # the first load as if it had run an hour ahead of the clock
        client.command("ALTER TABLE bronze.order_items UPDATE _ingested_at = _ingested_at + toIntervalHour(1) "
                       "WHERE 1 SETTINGS mutations_sync = 2")
        client.command("ALTER TABLE bronze.ingest_log UPDATE started_at = started_at + toIntervalHour(1) "
                       "WHERE 1 SETTINGS mutations_sync = 2")
    write_csv(settings.raw_dir, "order_items", NEXT_DAY, order_items(3))

    land(settings)

    (first,), (second,) = query(settings, "SELECT max(_ingested_at) FROM bronze.order_items GROUP BY _file_date "
                                          "ORDER BY _file_date")
    assert second > first


def test_a_header_message_shows_what_cannot_be_seen(tmp_path):
    settings = settings_for(tmp_path)
    header = ",".join(COLUMNS["order_items"]).encode()
    bom = "\ufeff".encode()
    write_bytes(settings.raw_dir, "order_items", DAY, bom + bom + header + b"\nO-1,1,P-1,1,2.00,0\n")
    write_bytes(settings.raw_dir, "order_items", NEXT_DAY, b"\n" + header + b"\nO-2,1,P-1,1,2.00,0\n")
    padded = ", ".join(COLUMNS["order_items"]).encode()
    write_bytes(settings.raw_dir, "order_items", DAY + timedelta(days=2), padded + b"\nO-3,1,P-1,1,2.00,0\n")
    twice = ",".join(["order_id", *COLUMNS["order_items"][:-1]]).encode()  # line_discount's place taken
    write_bytes(settings.raw_dir, "order_items", DAY + timedelta(days=3), twice + b"\nO-4,O-4,1,P-1,1,2.00\n")

    first, second, third, fourth = land(settings).outcomes

    # A second byte-order mark is named escaped, not as the order_id it looks like.
    assert first.reason == "wrong_header" and "unexpected '\\ufefforder_id'" in first.detail, first.detail
    assert second.reason == "wrong_header" and "the first line is empty" in second.detail, second.detail
    # A space after the comma is quoted: printed as it is, ` line_number` reads as the missing name.
    assert third.reason == "wrong_header" and "unexpected ' line_number'" in third.detail, third.detail
    # A name given twice is named beside the one its place was taken from.
    assert fourth.reason == "wrong_header" and "(missing line_discount; repeated order_id)" in fourth.detail, \
        fourth.detail


def test_a_row_with_a_comma_at_its_end_and_cr_line_ends_are_named(tmp_path):
    settings = settings_for(tmp_path)
    header = ",".join(COLUMNS["order_items"]).encode()
    # The engine drops an empty field at a record's end: this row would land as quantity 5,
    # unit_price 12 and line_discount 50.
    files = [
        write_bytes(settings.raw_dir, "order_items", DAY, header + b"\nO-1,1,P-1,1,2.00,\nO-1,2,P-1,5,12,50,\n"),
        write_bytes(settings.raw_dir, "order_items", NEXT_DAY, header + b"\rO-2,1,P-1,1,2.00,0\r"),
        write_bytes(settings.raw_dir, "order_items", DAY + timedelta(days=2),
                    header + b"\r\r\nO-3,1,P-1,1,2.00,0\r\r\n"),
        write_bytes(settings.raw_dir, "order_items", DAY + timedelta(days=3), header + b"\r\nO-4,1,P-1,1,2.00,0\r\n"),
        # The same with quotes in the file (a quoted comma too), and with a blank after the comma.
        write_bytes(settings.raw_dir, "order_items", DAY + timedelta(days=4),
                    header + b'\n"O-5",1,"P-1,x",1,2.00,0\n"O-5",2,P-1,5,12,50,\n'),
        write_bytes(settings.raw_dir, "order_items", DAY + timedelta(days=5), header + b"\nO-6,1,P-1,5,12,50, \n"),
        write_bytes(settings.raw_dir, "order_items", DAY + timedelta(days=6), header + b"\nO-7,1,P-1,5,12,50,\t"),
        # A CR CR LF row after a CRLF header; a quoted field may hold a CR of its own.
        write_bytes(settings.raw_dir, "order_items", DAY + timedelta(days=7),
                    header + b"\r\nO-8,1,P-1,1,2.00,0\r\r\n"),
        write_bytes(settings.raw_dir, "order_items", DAY + timedelta(days=8),
                    header + b'\r\nO-9,1,"P\r1",1,2.00,0\r\nO-9,2,"P-2,\r\n",1,2.00,0\r\n'),
    ]

    outcomes = {outcome.file.path: outcome for outcome in land(settings).outcomes}
    comma, cr, crcr, crlf, quoted, space, tab, crcr_rows, quoted_crs = (outcomes[path] for path in files)

    for outcome in (comma, quoted):
        assert outcome.reason == "parse_error" and "data row 2 has 7 fields" in outcome.detail, outcome.detail
    for outcome in (space, tab):
        assert outcome.reason == "parse_error" and "data row 1 " in outcome.detail, outcome.detail
    for outcome in (cr, crcr, crcr_rows):
        assert outcome.reason == "parse_error" and "carriage return" in outcome.detail, outcome.detail
        assert "Unknown field" not in outcome.detail
    assert (crlf.status, crlf.rows) == ("landed", 1)
    assert (quoted_crs.status, quoted_crs.rows) == ("landed", 2)
    assert rows_from_file(settings, comma.file.relative) == 0


def test_a_day_folder_rejected_as_a_link_is_logged_removed_once_it_is_a_plain_folder(tmp_path):
    settings = settings_for(tmp_path)
    header = ",".join(COLUMNS["order_items"]).encode()
    write_bytes(settings.raw_dir, "order_items", DAY, header + b"\nO-1,1,P-1,1,2.00,0\n")
    folder = (settings.raw_dir / relative_path("order_items", NEXT_DAY)).parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to((settings.raw_dir / relative_path("order_items", DAY)).parent)
    (outcome,) = land(settings).rejected
    linked = relative(folder, settings.raw_dir)
    assert (outcome.file.relative, outcome.reason) == (linked, "symlink")

    folder.unlink()  # the export put in a folder of its own
    export = write_bytes(settings.raw_dir, "order_items", NEXT_DAY, header + b"\nO-2,1,P-1,1,2.00,0\n")
    result = land(settings)

    assert [o.file.path for o in result.outcomes if o.status == "landed"] == [export]
    assert result.removed == [linked]
    with session(settings) as client:
        latest = client.query("SELECT argMax(status, finished_at), argMax(error, finished_at) FROM bronze.ingest_log "
                              "WHERE file_path = {p:String}", parameters={"p": linked}).result_rows
    assert latest == [("removed", "rejected earlier; now a folder whose files are listed on their own")]


def test_the_demo_summary_lists_the_files_still_rejected_only(tmp_path):
    from ecom.demo import summary

    settings = settings_for(tmp_path)
    header = ",".join(COLUMNS["order_items"]).encode()
    fixed = write_bytes(settings.raw_dir, "order_items", DAY, header + b"\nO-1,1,P-1,1,2.00\n")
    deleted = write_bytes(settings.raw_dir, "order_items", NEXT_DAY, b"order_id;line_number\n")
    kept = write_bytes(settings.raw_dir, "payments", DAY, b"payment_id\n")
    assert len(land(settings).rejected) == 3
    fixed.write_bytes(header + b"\nO-1,1,P-1,1,2.00,0\n")
    deleted.unlink()
    assert len(land(settings).landed) == 1

    with session(settings) as client:
        text = summary(client)

    assert "Rejected files: 1 " in text, text
    assert relative(kept, settings.raw_dir) in text
    assert relative(fixed, settings.raw_dir) not in text and relative(deleted, settings.raw_dir) not in text


def test_a_rejected_file_is_logged_removed_only_where_the_listing_looked(tmp_path):
    settings = settings_for(tmp_path)
    header = ",".join(COLUMNS["order_items"]).encode()
    write_bytes(settings.raw_dir, "order_items", DAY, header + b"\nO-1,1,P-1,1,2.00,0\n")
    broken = write_bytes(settings.raw_dir, "order_items", NEXT_DAY, b"id;qty\n1;2\n")
    odd = settings.raw_dir / "order_items" / "2026" / "03" / "01" / "order_items_\udcff.csv"
    odd.write_bytes(b"id;qty\n1;2\n")  # a name that is not UTF-8: logged escaped
    assert len(land(settings).rejected) == 2
    removed = "SELECT file_path FROM bronze.ingest_log WHERE status = 'removed'"

    # A raw directory pointed at an empty folder, or one without the entity folders, lists
    # nothing of these files: it says nothing about them.
    for elsewhere in (tmp_path / "empty", tmp_path / "other"):
        elsewhere.mkdir()
        assert land(settings_for(tmp_path, elsewhere)).removed == []
    write_bytes(tmp_path / "other", "orders", DAY, b"")
    assert land(settings_for(tmp_path, tmp_path / "other")).removed == []
    # A dated load does not list the folder of the file that is not UTF-8: still there.
    assert land(settings, start=NEXT_DAY, end=NEXT_DAY).removed == []
    assert query(settings, removed) == []

    broken.unlink()
    assert land(settings, start=NEXT_DAY, end=NEXT_DAY).removed == [relative(broken, settings.raw_dir)]
    assert land(settings).removed == [], "the file that is not UTF-8 is there"
    odd.unlink()
    assert len(land(settings).removed) == 1
    assert len(query(settings, removed)) == 2


def test_a_path_counts_as_rejected_while_its_latest_bytes_are_the_rejected_ones(tmp_path):
    """Each change of a path's bytes is judged against its latest entry: a good version put back
    over rejected bytes ends the rejection, and rejected bytes sent again after a good version
    are rejected and counted again."""
    settings = settings_for(tmp_path)
    header = ",".join(COLUMNS["order_items"]).encode()
    good = header + b"\nO-1,1,P-1,1,2.00,\n"
    cut = header + b"\nO-1,1,P-1,1,2.00,\nO-2,1,P-1"
    path = write_bytes(settings.raw_dir, "order_items", DAY, good)
    assert len(land(settings).landed) == 1
    path.write_bytes(cut)
    assert [o.reason for o in land(settings).rejected] == ["parse_error"]

    path.write_bytes(good)  # the version landed last, put back
    back = land(settings)
    assert (back.landed, back.rejected, back.removed) == ([], [], [relative(path, settings.raw_dir)])
    with session(settings) as client:
        assert latest_rejections(client) == []
    assert [(e["status"], e["sha256"]) for e in log_rows(settings)[relative(path, settings.raw_dir)]][-1] == (
        "removed", hashlib.sha256(good).hexdigest())
    assert land(settings).removed == [], "logged once"

    path.write_bytes(cut)  # the rejected bytes again, after the good version
    assert [o.reason for o in land(settings).rejected] == ["parse_error"]
    with session(settings) as client:
        assert [r.path for r in latest_rejections(client)] == [relative(path, settings.raw_dir)]
    assert land(settings).rejected == [], "rejected once while they stay"
    assert query(settings, "SELECT count() FROM bronze.order_items") == [(1,)]


def test_a_misplaced_export_is_told_where_it_belongs(tmp_path):
    settings = settings_for(tmp_path)
    body = ",".join(COLUMNS["order_items"]).encode() + b"\nO-1,1,P-1,1,2.00,\n"
    placed = {"order_items/2026/03/01/order_items_20260302.csv": "move it to order_items/2026/03/02/ or rename it",
              "orders/2026/03/01/order_items_20260301.csv": "is an export of order_items in the orders folder; "
                                                            "move it to order_items/2026/03/01/",
              "widgets/2026/03/01/widgets_20260301.csv": "is in widgets/, not an entity folder",
              "order_items/2026/03/01/order_items_20260301.txt": "does not end in .csv; if it is one, rename it "
                                                                 "to order_items_20260301.csv"}
    for name in placed:  # misnamed files are rejected before their bytes are read
        (settings.raw_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (settings.raw_dir / name).write_bytes(body)

    told = {o.file.relative: (o.reason, o.detail) for o in land(settings).rejected}

    assert {name: reason for name, (reason, _) in told.items()} == dict.fromkeys(placed, "bad_name")
    assert [name for name, hint in placed.items() if hint not in told[name][1]] == [], told


def test_the_cluster_shards_each_bronze_table_by_a_column_it_has(warehouse):
    # No cluster here: the local tables are made as plain MergeTree tables, and each Distributed
    # table's sharding key is read from its local table, which the engine refuses for a column
    # that table lacks.
    statements = bronze_ddl("analytics")
    sharded = {}
    with session() as client:
        for statement in statements:
            statement = statement.replace(" ON CLUSTER `analytics`", "")
            if "ENGINE = ReplicatedMergeTree" in statement:
                client.command(re.sub(r"ReplicatedMergeTree\('[^']*', '[^']*'\)", "MergeTree", statement))
            elif match := re.search(r"Distributed\(`analytics`, bronze, (\w+)_local, (.+)\)$", statement):
                sharded[match.group(1)] = match.group(2)
            else:
                client.command(statement)
        assert set(sharded) == {*COLUMNS, "ingest_log"}
        for name, key in sharded.items():
            client.query(f"SELECT {key} FROM bronze.{name}_local")


TWO_SHARDS = """<clickhouse><tcp_port>9000</tcp_port><remote_servers><two_shards>
<shard><replica><host>127.0.0.1</host><port>9000</port></replica></shard>
<shard><replica><host>127.0.0.2</host><port>9000</port></replica></shard>
</two_shards></remote_servers></clickhouse>"""

# One engine per process: a warehouse opened with a cluster in its configuration needs a process
# of its own. The statements of the loader and of silver that read one Distributed table
# filtered by a subquery of another, with the settings given.
SHARDED_READS = r"""
import json, re, sys
import clickhouse_connect
from ecom.load import bronze_ddl, latest_rejections
settings = {"skip_unavailable_shards": 1, **json.loads(sys.argv[3])}  # no server behind the second shard
client = clickhouse_connect.get_client(interface="chdb", path=f"file:{sys.argv[1]}?config-file={sys.argv[2]}",
                                       settings=settings)
for statement in bronze_ddl("two_shards"):
    statement = statement.replace(" ON CLUSTER `two_shards`", "")
    client.command(re.sub(r"ReplicatedMergeTree\('[^']*', '[^']*'\)", "MergeTree", statement))
for read in (lambda: latest_rejections(client),
             lambda: client.query("SELECT count() FROM bronze.orders WHERE _batch_id IN "
                                  "(SELECT batch_id FROM bronze.ingest_log WHERE status = 'landed')").result_rows):
    try:
        print(read())
    except Exception as exc:
        print(str(exc).splitlines()[0])
client.close()
"""


def test_the_cluster_target_reads_bronze_through_distributed_tables_of_several_shards(tmp_path):
    # A cluster of several shards refuses a Distributed table filtered by a subquery of another
    # under the engine's default; the settings of the cluster target, ecom's and dbt's
    # (profiles.yml), make such subqueries global.
    from ecom.warehouse import CLUSTER_SETTINGS

    profile = yaml.safe_load((ROOT / "profiles.yml").read_text())
    assert CLUSTER_SETTINGS.items() <= profile["ecom"]["outputs"]["cluster"]["custom_settings"].items()
    config = tmp_path / "config.xml"
    config.write_text(TWO_SHARDS)

    def reads(path: Path, settings: dict) -> list[str]:
        run = subprocess.run([sys.executable, "-c", SHARDED_READS, str(path), str(config), json.dumps(settings)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return run.stdout.splitlines()

    assert ["DISTRIBUTED_IN_JOIN_SUBQUERY_DENIED" in line for line in reads(tmp_path / "default", {})] == [True, True]
    assert reads(tmp_path / "cluster", CLUSTER_SETTINGS) == ["[]", "[(0,)]"]


def test_on_a_server_the_ingest_log_of_a_long_commit_goes_in_inserts_a_server_accepts(tmp_path):
    # A command's bound parameters go in the URL, and a server refuses one over
    # `http_max_field_value_size` (131,072 bytes by default); a commit of a year of five entities'
    # files is about 2,000 rows.
    from urllib.parse import quote

    from ecom.load import LOG_BYTES_PER_INSERT_ON_A_SERVER, _log, _log_entry, ensure_bronze

    started = "2026-03-01 00:00:00.000"
    entries = [_log_entry(RawFile(Path("x"), str(relative_path("order_items", DAY + timedelta(days=i))),
                                  "order_items", DAY + timedelta(days=i)),
                          sha256=f"{i:064x}", size=1000 + i, rows=i, status="landed", reason="", error="",
                          batch_id=f"batch-{i:05d}", version=1, started=started) for i in range(2000)]
    sent: list[int] = []

    class Recording:  # the real client, with the size of each bound `entries` noted
        def __init__(self, client: Client):
            self.client = client

        def command(self, sql: str, parameters: dict) -> None:
            sent.append(len(quote(parameters["entries"])))  # as in the URL
            self.client.command(sql, parameters=parameters)

    with session(settings_for(tmp_path)) as client:
        ensure_bronze(client)
        _log(Recording(client), entries, LOG_BYTES_PER_INSERT_ON_A_SERVER)
        logged = client.query("SELECT count(), uniqExact(batch_id), sum(rows) FROM bronze.ingest_log").result_rows

    assert sum(sent) > 131_072 and len(sent) > 1 and max(sent) <= 131_072, sent
    assert logged == [(2000, 2000, sum(range(2000)))]


def test_searched_by_load_says_which_files_a_load_of_some_days_finds(tmp_path):
    """The new-file sensor sends a file whose name gives no day with a run whose load finds it:
    `searched_by_load` answers as `discover` does for a load of a day."""
    names = ["x.csv", "misc/2026/11/x.csv", "orders/x.csv", "orders/x.csv.gz", "orders/2026/x.csv",
             "orders/2025/x.csv", "orders/2026/03/x.csv", "orders/2026/11/x.csv", "orders/2026/03/01/x.csv",
             "orders/2026/03/02/x.csv", "orders/2026/03/01/sub/x.csv", "orders/2026/11/13/sub/x.csv"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("order_id\n")
    found = {raw.relative for raw in discover(tmp_path, DAY, DAY)}
    assert {name for name in names if searched_by_load(name, DAY, DAY)} == found
    assert "orders/2026/11/x.csv" not in found and "orders/2026/03/x.csv" in found
