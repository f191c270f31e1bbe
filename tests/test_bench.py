"""`ecom bench --quick`: the benchmark runs end to end and reports every figure (SPEC section 8).

The smoke test only checks that every row is there with a positive number, or says why it was
skipped; the figures themselves are for BENCHMARKS.md, not for assertions (the machine is shared).
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import socket
import subprocess
from dataclasses import asdict
from datetime import date
from pathlib import Path

import pytest

from conftest import BIN, ecom_env, run_ecom
from ecom import bench
from ecom.bench import FULL, ORDER_ITEMS, QUICK, Row, Target, evaluate_targets, landing_dir, prepare_dataset, render

LANDING = ("ecom_load", "engine_ceiling", "duckdb")
EXPECTED_ROWS = (
    *(f"landing.{key}.{size}" for size in ("1x", "10x") for key in LANDING),
    "landing.pandas_postgres.sample",
    "full_refresh.1x",
    "one_more_day.1x",
    "full_refresh.10x",
    "one_more_day.10x",
    "one_more_day.ratio",
)


def test_scales_keep_the_added_day_the_same_size():
    for scale in (FULL, QUICK):
        assert scale.days_total == 10 * scale.days_1x + 1
        # 10x history is 10x the days at the same orders per day: the lines follow.
        expected = scale.orders_per_day * 10 * scale.days_1x * 2.6
        assert 0.9 * scale.lines < expected < 1.1 * scale.lines
        assert scale.days_1x % 7 == 0  # both added days fall on the same weekday


@pytest.mark.parametrize(("args", "error"), [
    (["--days", "5"], "Invalid value for '--days': 5 is not a multiple of 7, so the days added to the 1x and 10x "
     "histories would fall on different weekdays"),
    # Beyond the generator's bounds: refused before the cache is touched, not a traceback minutes in.
    (["--days", "7000"], "Invalid value for '--days': 7,000 days of 1x history make a world of 70,001 days from "
     "2016-06-15, past 2149-06-06, the last day the pipeline can load; give at most 4,851"),
    (["--days", "364", "--lines", "400000000"], "Invalid value for '--lines': 400,000,000 order lines make a world "
     "of 153,886,865 "
     "orders, more than the 100,000,000 the generator holds in memory; give fewer --lines"),
    (["--lines", "10000000000"], "Invalid value for '--lines': 10,000,000,000 order lines over 70 days of 10x "
     "history need 54,945,055 orders a day, more than the generator's 1,000,000; give fewer --lines or more --days"),
    # An empty path is the working directory: its JSON could only fail once the run is over.
    (["--json", ""], "Invalid value for '--json': is empty: give a path, or leave the option out"),
])
def test_options_the_run_could_not_honour_are_refused_before_it(tmp_path, args, error):
    env = ecom_env(tmp_path / "raw", tmp_path / "warehouse")
    done = run_ecom("bench", "--quick", *args, "--cache-dir", str(tmp_path / "cache"), env=env, check=False,
                    timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().endswith(f"Error: {error}"), done.stderr
    assert not (tmp_path / "cache").exists()


def test_targets_say_what_is_met_and_the_gap():
    rows = [
        Row("landing.ecom_load.10x", "landing", "loader", 1_000_000.0, "lines/s"),
        Row("landing.engine_ceiling.10x", "landing", "ceiling", 4_000_000.0, "lines/s"),
        Row("landing.duckdb.10x", "landing", "duckdb", 800_000.0, "lines/s"),
        Row("full_refresh.1x", "full_refresh", "fr", 10.0, "s", detail={"order_lines": 1, "load_seconds": 1.0,
                                                                          "dbt_seconds": 9.0, "peak_rss_gb": 1.0}),
        Row("full_refresh.10x", "full_refresh", "fr", 90.0, "s", detail={"order_lines": 10, "load_seconds": 30.0,
                                                                           "dbt_seconds": 60.0, "peak_rss_gb": 2.0}),
        Row("one_more_day.1x", "one_more_day", "day", 2.0, "s", detail={"peak_rss_gb": 0.5}),
        Row("one_more_day.10x", "one_more_day", "day", 4.0, "s", detail={"peak_rss_gb": 0.5}),
        Row("one_more_day.ratio", "one_more_day", "ratio", 2.0, "x", detail={"rows_read_ratio": 3.0}),
    ]
    targets = {t.target.split(" [")[0]: t for t in evaluate_targets(rows, FULL)}
    assert targets["landing >= 3,000,000 order lines/s"].met is False
    assert targets["landing >= 3,000,000 order lines/s"].gap == "3.00x too slow"
    assert targets["landing within 1.5x of the engine's INSERT ... SELECT FROM file()"].met is False
    assert targets["landing no slower than DuckDB read_csv"].met is True
    assert targets["full refresh of 10 order lines under 60 s"].gap == "1.50x over"
    assert targets["peak memory under 8 GB"].met is True
    assert targets["one more day on 1x history under 10% of its full refresh"].met is False
    assert targets["one more day on 10x history under 10% of its full refresh"].met is True
    assert targets["one more day grows less than 1.5x from 1x to 10x history"].measured == "2.00x (rows read 3.0x)"
    assert all(isinstance(t, Target) for t in targets.values())


def test_a_killed_full_refresh_is_told_in_the_table_and_the_targets():
    ran = {"order_lines": 5, "raw_files": 2, "load_seconds": 1.0, "dbt_seconds": 4.0, "peak_rss_gb": 0.5}
    rows = [
        Row("full_refresh.1x", "full_refresh", "fr 1x", 5.0, "s", detail=ran),
        Row("one_more_day.1x", "one_more_day", "day 1x", 1.0, "s", detail=ran),
        Row("full_refresh.10x", "full_refresh", "fr 10x", unit="s", error="full refresh 10x killed (signal 9)",
            detail={"exit_code": -9}),
        Row("one_more_day.10x", "one_more_day", "day 10x", unit="s", skipped="skipped: the 10x history did not build"),
        Row("one_more_day.ratio", "one_more_day", "ratio", unit="x", skipped="skipped: a run is missing"),
    ]
    targets = {t.target.split(" [")[0]: t for t in evaluate_targets(rows, QUICK)}
    assert targets["full refresh under 60 s"].measured == "step killed (signal 9)"
    assert targets["full refresh under 60 s"].met is None
    # Under 8 GB in the runs that finished says nothing of the one that did not.
    assert targets["peak memory under 8 GB"].met is None
    assert targets["peak memory under 8 GB"].measured == "0.50 GB in the 2 of 4 runs that finished"
    figures = {
        "scale": "quick", "date": "2026-01-01",
        "machine": {"cores": 2, "cpu": "cpu", "memory_gb": 8, "load_average_at_start": [0.0]},
        "versions": {},
        "dataset": {"orders_per_day": 1, "origin": "2016-06-15", "days_1x": 7, "lines_1x": 5, "files_1x": 2,
                    "days_10x": 70, "lines_10x": 50, "files_10x": 20},
        "rows": [asdict(r) for r in rows],
        "targets": [asdict(t) for t in targets.values()],
    }
    table = render(figures)
    assert "fr 10x: error: full refresh 10x killed (signal 9)" in table
    assert re.search(r"^fr 10x( +-){9}$", table, re.MULTILINE), table


@pytest.mark.parametrize("row_id", ["full_refresh.1x", "one_more_day.1x"])
def test_a_build_that_failed_gives_no_figure_and_names_its_first_error(tmp_path, row_id):
    """A dbt build that stopped early would time less than the work, on a full refresh as on one
    more day: the row has no figure, and its error names dbt's first error."""
    day = date(2016, 6, 15)
    dataset = bench.Dataset(raw_dir=tmp_path, root=tmp_path, origin=day, days_1x=7, orders_per_day=1,
                            lines_by_day={day.isoformat(): 5}, files_by_day={day.isoformat(): 2},
                            order_item_files={}, sizes={})
    result = {"seconds": 3.0, "files_seen": 2, "files_landed": 2, "files_rejected": 0, "rows_landed": 9,
              "order_lines_landed": 5,
              "load_seconds": 1.0, "dbt_seconds": 2.0, "peak_rss_bytes": 1 << 30, "layers": {},
              "dbt_success": False, "dbt_statuses": {"success": 3, "error": 1},
              "dbt_errors": ["model fct_orders: Code: 241. Memory limit exceeded"]}
    row = Row(row_id, row_id.split(".")[0], "run", unit="s")
    bench._pipeline_detail(row, result, dataset, day, day)
    assert row.value is None
    assert row.error.startswith("dbt build failed (dbt build did not pass: 1 error)")
    assert row.error.endswith("first error: model fct_orders: Code: 241. Memory limit exceeded")
    if row_id == "full_refresh.1x":  # the 10x full refresh's target says it failed, and after how long
        failed = Row("full_refresh.10x", row.group, row.label, unit="s", error=row.error, detail=row.detail)
        targets = {t.target.split(" [")[0]: t for t in evaluate_targets([failed], QUICK)}
        assert (targets["full refresh under 60 s"].met, targets["full refresh under 60 s"].measured) == (
            False, "dbt build failed after 3 s")
        # A build that failed says nothing of the peak memory of one that would have finished.
        assert targets["peak memory under 8 GB"].met is None
        # Other data landed too: that is the row's error, and the target still says the build failed.
        bench._pipeline_detail(row := Row(row_id, row.group, row.label, unit="s"),
                               {**result, "order_lines_landed": 4}, dataset, day, day)
        assert row.value is None and row.detail["failure"] == "landed other data than the dataset lists"
        failed = Row("full_refresh.10x", row.group, row.label, unit="s", error=row.error, detail=row.detail)
        targets = {t.target.split(" [")[0]: t for t in evaluate_targets([failed], QUICK)}
        assert targets["full refresh under 60 s"].measured == "dbt build failed after 3 s"
    result.update(dbt_success=True, dbt_statuses={"success": 4})
    bench._pipeline_detail(row := Row(row_id, row_id.split(".")[0], "run", unit="s"), result, dataset, day, day)
    assert (row.value, row.error) == (3.0, None)


def test_a_postgres_that_does_not_start_says_why(monkeypatch):
    """The server log's last line is "database system is shut down"; the cause comes before it."""
    if bench._postgres_bindir() is None:
        pytest.skip("no PostgreSQL binaries")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setattr(bench, "_free_port", lambda: busy.getsockname()[1])
        with pytest.raises(bench.PostgresUnavailable) as failed, bench.postgres_cluster(lambda _: None):
            pass
    assert "Address already in use" in str(failed.value), failed.value


@pytest.mark.parametrize("option", ["--json", "--cache-dir"])
def test_an_unusable_path_is_refused_before_the_run(tmp_path, option):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    paths = {"--json": str(tmp_path / "figures.json"), "--cache-dir": str(tmp_path / "cache")}
    paths[option] = str(blocker / "below")
    env = ecom_env(tmp_path / "raw", tmp_path / "warehouse")
    done = run_ecom("bench", "--quick", "--json", paths["--json"], "--cache-dir", paths["--cache-dir"], env=env,
                    check=False, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: cannot use {option}{' (or ECOM_BENCH_DIR)' * (option == '--cache-dir')} " \
        f"{blocker / 'below'}: {blocker} is a file, not a folder; choose another path"
    assert not list(tmp_path.glob("cache/world-*"))  # refused before generating anything


@pytest.mark.parametrize("option", ["--json", "--cache-dir"])
def test_a_folder_that_cannot_be_written_is_refused_before_the_run(tmp_path, option):
    # As root without the capabilities that let root write anywhere (setpriv), so that the
    # folder's permissions apply: it is there, so making it succeeds, and writing in it fails.
    from ecom.soak import unprivileged_prefix

    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("root writes anywhere, and setpriv is not there to drop that: no unwritable folder")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    paths = {"--json": str(tmp_path / "figures.json"), "--cache-dir": str(tmp_path / "cache")}
    paths[option] = str(folder / "figures.json") if option == "--json" else str(folder)
    done = subprocess.run([*prefix, str(BIN / "ecom"), "bench", "--quick", "--json", paths["--json"], "--cache-dir",
                           paths["--cache-dir"]], env=ecom_env(tmp_path / "raw", tmp_path / "warehouse"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"error: cannot use {option}{' (or ECOM_BENCH_DIR)' * (option == '--cache-dir')} " \
        f"{paths[option]}: Permission denied in {folder}; choose another path or check its permissions"
    if option == "--cache-dir":  # a lock file left there that cannot be written, in a folder that can
        cache = tmp_path / "cache"
        cache.mkdir()
        (cache / bench.LOCK_FILE).write_text("")
        (cache / bench.LOCK_FILE).chmod(0o444)
        done = subprocess.run([*prefix, str(BIN / "ecom"), "bench", "--quick", "--cache-dir", str(cache)],
                              env=ecom_env(tmp_path / "raw", tmp_path / "warehouse"), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == f"error: cannot use --cache-dir (or ECOM_BENCH_DIR) {cache}: Permission " \
            f"denied on its {bench.LOCK_FILE}; choose another path or check its permissions"
    if option == "--json":  # a file there that cannot be written, in a folder that can
        kept = tmp_path / "kept.json"
        kept.write_text("{}")
        kept.chmod(0o444)
        done = subprocess.run([*prefix, str(BIN / "ecom"), "bench", "--quick", "--json", str(kept), "--cache-dir",
                               paths["--cache-dir"]], env=ecom_env(tmp_path / "raw", tmp_path / "warehouse"),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == f"error: cannot use --json {kept}: Permission denied; choose another path " \
            "or check its permissions"


def test_a_second_bench_on_the_same_cache_folder_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = ecom_env(tmp_path / "raw", tmp_path / "warehouse")
    with open(cache / bench.LOCK_FILE, "w") as held:  # as a running bench holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4321\n")
        held.flush()
        done = run_ecom("bench", "--quick", "--cache-dir", str(cache), env=env, check=False, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: another ecom bench (process 4321) is using {cache}; wait for it to "
                                   "finish or give this run another --cache-dir")
    assert [p.name for p in cache.iterdir()] == [bench.LOCK_FILE]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str, Path]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "figures.json"
    env = ecom_env(tmp / "raw-not-used", tmp / "warehouse-not-used")  # the bench has its own
    done = run_ecom("bench", "--quick", "--json", str(out), "--cache-dir", str(tmp / "cache"), "--keep", env=env,
                    check=False)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert not (tmp / "raw-not-used").exists()
    assert not (tmp / "warehouse-not-used").exists()
    return json.loads(out.read_text()), done.stdout, tmp / "cache" / "run"


def test_quick_bench_reports_every_row(quick_run):
    figures, _, _ = quick_run
    rows = {row["id"]: row for row in figures["rows"]}
    assert set(EXPECTED_ROWS) <= set(rows)
    for row_id in EXPECTED_ROWS:
        row = rows[row_id]
        assert row["error"] is None, f"{row_id}: {row['error']}"
        if row["skipped"] is not None:
            assert row["skipped"].startswith("skipped: ") and len(row["skipped"]) > len("skipped: "), row_id
            assert row_id == "landing.pandas_postgres.sample", f"{row_id} was skipped: {row['skipped']}"
            continue
        assert row["value"] is not None and row["value"] > 0, row_id
        numbers = [v for v in row["detail"].values() if isinstance(v, int | float) and not isinstance(v, bool)]
        assert all(v >= 0 for v in numbers), row_id
    for row_id in ("full_refresh.1x", "one_more_day.1x", "full_refresh.10x", "one_more_day.10x"):
        detail = rows[row_id]["detail"]
        assert detail["dbt_seconds"] > 0 and detail["load_seconds"] > 0 and detail["peak_rss_gb"] > 0
        assert detail["files_landed"] > 0
        assert {"silver", "gold"} <= set(detail["layers"]), detail["layers"]
        # The engine's CPU (its statements, from the query log) is part of the process's.
        log = detail["query_log"]
        assert 0 < log["engine_cpu_seconds"] <= detail["cpu_seconds"] + 0.05, (log["engine_cpu_seconds"], detail)
        assert log["by_node"] and all(n["cpu_seconds"] >= 0 for n in log["by_node"])
        assert [n["cpu_seconds"] for n in log["by_node"]] == sorted((n["cpu_seconds"] for n in log["by_node"]),
                                                                     reverse=True)
    for size in ("1x", "10x"):
        assert rows[f"landing.ecom_load.{size}"]["detail"]["row_numbers_exact"] is True
        lines = {rows[f"landing.{key}.{size}"]["detail"]["lines"] for key in LANDING}
        assert len(lines) == 1, f"the contenders of {size} did not land the same lines: {lines}"


def test_quick_bench_prints_machine_versions_and_targets(quick_run):
    figures, stdout, _ = quick_run
    assert figures["machine"]["cores"] >= 1 and figures["machine"]["memory_gb"] > 0
    for package in ("chdb", "duckdb", "dbt-core"):
        assert figures["versions"][package][0].isdigit()
    assert figures["date"][:4].isdigit()
    assert figures["targets"] and all(t["measured"] for t in figures["targets"])
    assert stdout.strip() == render(figures).strip()
    assert "Targets (SPEC section 8)" in stdout


def count_rows(warehouse: Path, table: str) -> int:
    """Rows of a table in a kept warehouse, read by a process of its own (one process per path)."""
    sql = f"SELECT count() FROM {table}"
    code = f"import chdb; print(chdb.query({sql!r}, 'CSV', path={str(warehouse)!r}))"
    done = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip())


def test_keep_leaves_every_warehouse_of_the_run_to_inspect(quick_run):
    figures, _, run_dir = quick_run
    rows = {row["id"]: row for row in figures["rows"]}
    for size in ("1x", "10x"):
        lines = rows[f"landing.ecom_load.{size}"]["detail"]["lines"]
        assert count_rows(run_dir / "landing" / f"loader-{size}", "bronze.order_items") == lines
        assert count_rows(run_dir / "landing" / f"engine-{size}", "default.order_items") == lines
        assert (run_dir / "landing" / f"duckdb-{size}.duckdb").stat().st_size > 0
        # The history's warehouse after its one more day: gold holds the day's orders too.
        day = re.search(r"\((\d{4}-\d{2}-\d{2})\)", rows[f"one_more_day.{size}"]["label"]).group(1)
        orders = count_rows(run_dir / f"warehouse-{size}", f"gold.fct_orders WHERE order_date = '{day}'")
        assert orders > 0, f"no orders of {day} in the kept {size} warehouse"
    assert not (run_dir / "warehouse").exists()


def test_a_damaged_cached_world_is_made_again_before_measuring(quick_run, tmp_path):
    _, _, run_dir = quick_run
    world = next(run_dir.parent.glob("world-*"))
    copy = tmp_path / "cache" / world.name
    shutil.copytree(world, copy)  # the run's world stays as it was for the other tests
    items = sorted((copy / "raw" / ORDER_ITEMS).rglob("*.csv"))
    items[0].unlink()
    items[1].write_bytes(items[1].read_bytes()[:200])  # cut short, as by a full disk
    told: list[str] = []
    dataset = prepare_dataset(QUICK, tmp_path / "cache", told.append)
    assert told[0] == (f"the cached world in {copy} differs from its dataset.json in 2 of {len(dataset.sizes)} "
                       f"files (missing, added or resized: {items[0].relative_to(copy / 'raw')}, ...): "
                       "generating it again")
    assert items[0].is_file() and bench._differing(dataset.raw_dir, dataset.sizes) == []
    # A file the loader reads that is not a .csv (a compressed export, which it rejects) differs too.
    extra = items[0].with_name(items[0].name + ".gz")
    extra.write_bytes(b"x")
    assert bench._differing(dataset.raw_dir, dataset.sizes) == [extra.relative_to(copy / "raw").as_posix()]
    extra.unlink()
    # What the loader passes over does not count: a Finder's .DS_Store, an export still being written.
    for ignored in (items[0].with_name(".DS_Store"), items[0].with_name(items[0].name + ".partial")):
        ignored.write_bytes(b"x")
    assert bench._differing(dataset.raw_dir, dataset.sizes) == []

    # A landing set that lost a file but kept its .complete mark is made again.
    landing = landing_dir(dataset, 10)
    files = dataset.item_files(dataset.origin, dataset.history_end(10))
    (landing / files[-1]).unlink()
    told.clear()
    prepare_dataset(QUICK, tmp_path / "cache", told.append)
    assert told == [f"the landing set {landing} differs from the dataset (1 of {len(files)} files missing, added "
                    "or resized): making it again"]
    assert (landing / files[-1]).is_file()

    # A world of another generator (its code changed since) is generated again.
    info = json.loads((copy / "dataset.json").read_text())
    (copy / "dataset.json").write_text(json.dumps({**info, "generator": "an older one"}))
    told.clear()
    prepare_dataset(QUICK, tmp_path / "cache", told.append)
    assert told[0] == (f"the cached world in {copy} was written by another version of the generator "
                       "(generate.py, world.py, contract.py or numpy): generating it again")
    assert json.loads((copy / "dataset.json").read_text())["generator"] == info["generator"]


def test_a_landing_of_other_files_than_the_dataset_lists_is_an_error(quick_run, tmp_path):
    _, _, run_dir = quick_run
    world = next(run_dir.parent.glob("world-*"))
    shutil.copytree(world, tmp_path / "cache" / world.name)
    dataset = prepare_dataset(QUICK, tmp_path / "cache", lambda _: None)
    files = dataset.item_files(dataset.origin, dataset.history_end(1))
    (landing_dir(dataset, 1) / files[0]).unlink()  # after the check: as if during the run
    runner = bench.Runner(tmp_path / "run", lambda _: None)
    rows = bench._landing_rows(runner, dataset, 1, {"engine_version": None}, keep=False)
    lines = dataset.lines(dataset.origin, dataset.history_end(1))
    for row in rows:
        assert row.value is None, row
        assert row.error.startswith(f"read {len(files) - 1} files and landed {row.detail['lines']:,} order lines "
                                    f"where {dataset.root / 'dataset.json'} lists {len(files)} and {lines:,}"), row


def test_landing_rounds_take_turns_and_keep_each_contenders_median(quick_run, tmp_path):
    _, _, run_dir = quick_run
    world = next(run_dir.parent.glob("world-*"))
    shutil.copytree(world, tmp_path / "cache" / world.name)
    dataset = prepare_dataset(QUICK, tmp_path / "cache", lambda _: None)
    told: list[str] = []
    runner = bench.Runner(tmp_path / "run", told.append)
    rows = bench._landing_rows(runner, dataset, 1, {"engine_version": None}, keep=False, rounds=3)
    started = [line for line in told if "(round " in line and line.endswith("...")]
    # the contenders in turn, round after round
    assert [re.search(r"round (\d) of 3", line)[1] for line in started] == list("111222333"), told
    lines = dataset.lines(dataset.origin, dataset.history_end(1))
    for row in rows:
        assert row.error is None, row
        runs = row.detail["runs"]
        assert len(runs) == 3 and all(seconds > 0 for seconds in runs), row
        assert row.detail["seconds"] == sorted(runs)[1]
        seconds = row.detail["seconds"]  # rounded to the millisecond
        assert lines / (seconds + 0.0005) <= row.value <= lines / (seconds - 0.0005), row
    assert not list((tmp_path / "run" / "landing").glob("*"))  # every round's store removed
