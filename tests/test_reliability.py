"""A crash, a bad file or a second process never loses or doubles a row (RELIABILITY.md).

Fast versions of the suites `python -m ecom.soak` runs at length: real `ecom` processes killed
with SIGKILL at exact and at seeded random points, a delete+insert model failing between its
two statements, the bad-input corpus of tests/badinput, injection-shaped names, two pipelines
at once, a full disk, unwritable directories, and a password that must never be printed.
Every "same as a clean run" below is a row-by-row comparison of every bronze, silver and gold
MergeTree table (ecom.soak.snapshot / compare: per-row hashes without `_batch_id`,
`_ingested_at` and the ingest log's batch ids and timestamps).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, ROOT, dbt, ecom_env, parsed_project, run_ecom
from ecom import soak
from ecom.config import Settings
from ecom.load import load
from ecom.warehouse import session

CORPUS = ROOT / "tests" / "badinput"


# ---------------------------------------------------------------------------------------------
# Crash consistency


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[soak.Workspace, soak.Baseline]:
    """A 3-day world: the first two days built (the template), and a clean run of the third on it,
    whose warehouse is kept (`after`)."""
    root = tmp_path_factory.mktemp("reliability")
    # The workspace's runs share one dbt target folder (Workspace.env); with the test run's parse
    # of the checkout in it, the first build parses only what its copy of the project changed.
    if saved := parsed_project():
        (root / "dbt-target").mkdir()
        shutil.copy2(saved, root / "dbt-target" / saved.name)
    space, baselines = soak.prepare(root, seed=11, days=3, orders_per_day=80, fresh=False,
                                    keep_clean_runs=True, log=lambda _: None)
    return space, baselines["incremental"]


def bronze_of(reference: soak.Snapshot) -> soak.Snapshot:
    return {name: rows for name, rows in reference.items() if name.startswith("bronze.")}


def assert_same_as_clean_run(reference: soak.Snapshot, warehouse: Path, layers=soak.LAYERS) -> soak.Comparison:
    comparison = soak.compare(reference, soak.snapshot(warehouse, layers))
    assert (comparison.rows_lost, comparison.rows_doubled, comparison.rows_unexpected) == (0, 0, 0), comparison
    assert not comparison.tables_missing and not comparison.tables_extra, comparison
    assert not comparison.tables_differing, comparison
    return comparison


def orphan_rows(warehouse: Path) -> int:
    """Bronze rows of batches without a `landed` row in the ingest log."""
    union = " UNION ALL ".join(
        f"SELECT count() AS n FROM bronze.{entity} WHERE _batch_id NOT IN "
        "(SELECT batch_id FROM bronze.ingest_log WHERE status = 'landed')"
        for entity in ("customers", "products", "orders", "order_items", "payments"))
    with session(Settings(chdb_path=warehouse)) as client:
        return int(client.command(f"SELECT sum(n) FROM ({union})"))


# `ecom load` with one of the loader's steps replaced by "do it (or not), then SIGKILL myself".
CRASHING_LOAD = r"""
import os, signal, sys
import ecom.load as load

point, nth = sys.argv[1], int(sys.argv[2])
calls = [0]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def wrap(original, kill_before):
    def step(*args, **kwargs):
        calls[0] += 1
        if kill_before and calls[0] == nth:
            die()
        result = original(*args, **kwargs)
        if calls[0] == nth:
            die()
        return result
    return step

def delete_then_die(client, entity, where, parameters, cluster=None):
    client.command(f"DELETE FROM bronze.`{entity}` WHERE {where}", parameters=parameters,
                   settings={"lightweight_deletes_sync": 0})
    die()

if point == "before_insert":
    load._land_rows = wrap(load._land_rows, kill_before=True)
elif point == "after_insert":
    load._land_rows = wrap(load._land_rows, kill_before=False)
elif point == "after_log":
    load._log = wrap(load._log, kill_before=False)
elif point == "mid_cleanup":
    load._delete_rows = delete_then_die
sys.argv = ["ecom", "load", "--quiet"]
from ecom.cli import main
main()
"""


def crash_load(space: soak.Workspace, warehouse: Path, point: str, nth: int = 1) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASHING_LOAD, point, str(nth)], env=space.env(warehouse),
                          cwd=space.project, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, f"{point} #{nth} was not reached: {proc.returncode}\n{proc.stdout}{proc.stderr}"


def test_load_killed_at_every_step_of_a_file_lands_each_file_exactly_once(bench):
    """SIGKILL after an INSERT (rows in bronze, no ledger row), while the next load deletes the
    rows of that crash, before an INSERT, and after the ledger rows (the day's files are logged
    together); then one clean `ecom load`."""
    space, base = bench
    warehouse = space.root / "load-crashes"
    base.prepare(warehouse)

    crash_load(space, warehouse, "after_insert", nth=2)
    assert orphan_rows(warehouse) > 0, "the kill left rows of a file that is not in the ingest log"
    crash_load(space, warehouse, "mid_cleanup")
    crash_load(space, warehouse, "before_insert", nth=2)
    crash_load(space, warehouse, "after_log", nth=1)
    rerun = space.run(["load", "--quiet"], warehouse)

    assert "landed" in rerun.stdout
    assert orphan_rows(warehouse) == 0
    assert_same_as_clean_run(bronze_of(base.reference), warehouse, ("bronze",))
    with session(Settings(chdb_path=warehouse)) as client:
        per_file = client.query("SELECT file_path, countIf(status = 'landed'), countIf(status != 'landed') "
                                "FROM bronze.ingest_log GROUP BY file_path").result_rows
    assert per_file and all(landed == 1 and other == 0 for _, landed, other in per_file), per_file


def test_a_delete_insert_model_failing_after_its_delete_then_a_kill_mid_dbt_are_repaired(bench):
    """silver.orders loses the keys of the new day to its DELETE, its INSERT fails (the state a
    kill between the two statements leaves); then `ecom run` is killed at a seeded random point
    of its dbt phase; the next `ecom run` gives the clean run's rows in every table."""
    space, base = bench
    warehouse = space.root / "dbt-crashes"
    base.prepare(warehouse)
    with session(Settings(chdb_path=warehouse)) as client:
        before = int(client.command("SELECT count() FROM silver.orders"))
        client.command(f"ALTER TABLE silver.orders ADD CONSTRAINT {soak.FAULT_CONSTRAINT} CHECK 0")

    failed = space.run(["run", "--quiet"], warehouse, expect=(1,))

    assert "orders" in failed.stderr and "error: dbt build failed" in failed.stderr
    with session(Settings(chdb_path=warehouse)) as client:
        after = int(client.command("SELECT count() FROM silver.orders"))
        client.command(f"ALTER TABLE silver.orders DROP CONSTRAINT {soak.FAULT_CONSTRAINT}")
    assert after < before, "the delete ran and took rows with it: the fault was injected"

    delay = random.Random(11).uniform(0, (base.run_seconds - base.dbt_begin) * 0.9)
    logs = space.root / "dbt-crashes-logs"
    killed = space.run_and_kill(["run", "--quiet"], warehouse, delay, logs=logs, after_dbt_starts=True)
    assert killed.returncode is None, f"the run ended before its kill: {killed}"
    space.run(["run", "--quiet"], warehouse)

    print(f"killed after {delay:.1f}s of dbt: {soak.fault_point(logs, killed, None, 0)}")
    comparison = assert_same_as_clean_run(base.reference, warehouse)
    # The work table dbt-clickhouse left for the failed model is dropped by the next run.
    assert comparison.stale_staging_tables == []


# What a run stopped in the middle of a model's INSERT leaves: ClickHouse writes an INSERT part by
# part (one part per block of about a million rows and per partition), so the parts written
# before the stop stay, and their `_ingested_at` is the newest in the table. The soak's
# `partial_insert` trials (`--small-insert-blocks`) get there with real kills; this test builds
# the same state exactly, for an append model, a delete+insert model and a model kept by month.
# The rows of the last run taken out again, per model. A model kept by month swaps whole month
# partitions in, so a run stopped after the swap and before its watermark keeps them all (None).
PARTIAL_MODELS = {"silver.payments_versions": "cityHash64(payment_id, _row_number) % 2 = 0",
                  "gold.fct_payments": "cityHash64(payment_id) % 2 = 0",
                  "gold.int_product_sales_by_month": None}


def test_an_insert_stopped_midway_is_rolled_back_and_redone_by_the_next_run(bench):
    """Half of the rows the last run wrote into each model are taken out again and that run's
    watermark record is dropped: the state of a run stopped midway through the models' INSERTs.
    The next build of those models must remove the half that was written and redo the run's work
    in full: the `max(_ingested_at)` of the half that stayed would otherwise skip the other half
    for good. A model kept by month keeps the months it swapped in, and must rebuild them too: the
    rollback removes them after the model's SQL chose its months. The build selects these models
    and every model reading them (the rest of a whole `ecom run` has nothing to do here), as
    `ecom run` does it: `dbt build` without the unit tests."""
    space, base = bench
    warehouse = space.root / "partial-insert"
    shutil.copytree(base.after, warehouse, symlinks=True)  # the last run: the clean run of the last day
    with session(Settings(chdb_path=warehouse)) as client:
        for model, half in PARTIAL_MODELS.items():
            parameters = {"model": model}
            last, before = client.query(
                "SELECT max(recorded_at), argMaxIf(watermark, recorded_at, recorded_at < "
                "(SELECT max(recorded_at) FROM ecom_state.incremental_watermarks WHERE model = {model:String})) "
                "FROM ecom_state.incremental_watermarks WHERE model = {model:String}",
                parameters=parameters).result_rows[0]
            client.command("DELETE FROM ecom_state.incremental_watermarks WHERE model = {model:String} "
                           "AND recorded_at = {last:DateTime64(3, 'UTC')}", parameters={**parameters, "last": last})
            where = "_ingested_at > {before:DateTime64(3, 'UTC')}"
            written = int(client.command(f"SELECT count() FROM {model} WHERE {where}", parameters={"before": before}))
            if half is None:
                assert written > 0, f"{model}: the last run swapped no month in"
                continue
            client.command(f"DELETE FROM {model} WHERE {where} AND {half}", parameters={"before": before})
            left = int(client.command(f"SELECT count() FROM {model} WHERE {where}", parameters={"before": before}))
            assert 0 < left < written, f"{model}: {left} of the last run's {written} rows left"

    rerun = dbt("build", "--exclude-resource-type", "unit_test", "--select",
                *(model.split(".")[1] + "+" for model in PARTIAL_MODELS),
                env=space.env(warehouse), project=space.project, timeout=600)

    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stdout + rerun.stderr
    assert_same_as_clean_run(base.reference, warehouse)


def test_compare_tells_lost_doubled_and_unexpected_rows_apart():
    from collections import Counter

    reference = {"silver.t": Counter({1: 1, 2: 1, 3: 2}), "gold.g": Counter({9: 1})}
    got = {"silver.t": Counter({1: 2, 3: 1, 4: 1}), "silver.t__dbt_new_data_ab12": Counter({5: 1})}

    result = soak.compare(reference, got)

    assert (result.rows_lost, result.rows_doubled, result.rows_unexpected) == (3, 1, 1)
    assert result.tables_missing == ["gold.g"] and result.tables_differing == ["silver.t"]
    assert result.stale_staging_tables == ["silver.t__dbt_new_data_ab12"] and not result.ok
    assert soak.compare(reference, reference).ok


def test_the_soak_plan_covers_every_kind_in_each_round():
    size = len(soak.KINDS)
    order = soak.plan(2 * size + 3, random.Random(3))
    assert len(order) == 2 * size + 3
    assert sorted(order[:size]) == sorted(order[size:2 * size]) == sorted(soak.KINDS)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_every_file_of_the_bad_input_corpus_lands_or_is_rejected_as_its_readme_says(tmp_path):
    result = soak.try_corpus(CORPUS, tmp_path)

    assert result.exit_code == 3, result.stderr  # some rejected, the good ones landed, no crash
    assert "Traceback" not in result.stderr
    assert result.mismatches == []
    assert result.files_kept
    assert result.tried + len(result.not_tried) == len(soak.read_corpus(CORPUS))
    if result.not_tried:
        pytest.skip(f"root without setpriv: permission cases not tried: {result.not_tried}")


def test_a_file_still_being_written_while_it_lands_is_rejected_then_lands_whole(tmp_path, monkeypatch):
    """The exporter appends a row between the checksum pass and the engine's read: the rows
    would not match the logged sha256, so the batch is discarded and the next load lands it."""
    import ecom.load

    raw = tmp_path / "raw" / "order_items" / "2026" / "03" / "01" / "order_items_20260301.csv"
    raw.parent.mkdir(parents=True)
    raw.write_text("order_id,line_number,product_id,quantity,unit_price,line_discount\nO-1,1,P-1,1,2.00,\n")
    settings = Settings(raw_dir=tmp_path / "raw", chdb_path=tmp_path / "warehouse")
    land_rows = ecom.load._land_rows

    def exporter_still_writing(*args, **kwargs):
        with open(raw, "a") as handle:
            handle.write("O-1,2,P-2,1,3.00,\n")
        return land_rows(*args, **kwargs)

    with session(settings) as client:
        monkeypatch.setattr(ecom.load, "_land_rows", exporter_still_writing)
        (first,) = load(settings, client).outcomes
        left = client.command("SELECT count() FROM bronze.order_items")
        monkeypatch.setattr(ecom.load, "_land_rows", land_rows)
        (second,) = load(settings, client).outcomes

    assert (first.status, first.reason, left) == ("rejected", "changed_while_loading", 0)
    assert (second.status, second.rows) == ("landed", 2)  # the header and both rows the exporter wrote


def test_the_corpus_readme_lists_every_file():
    listed = {case.path for case in soak.read_corpus(CORPUS) if not case.made_by_test}
    present = set()
    for dirpath, dirnames, filenames in os.walk(CORPUS):
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink() or d.endswith(".csv")]:
            relative = Path(dirpath, name).relative_to(CORPUS).as_posix()
            if name not in ("README.md", ".keep"):
                present.add(relative)
    assert listed == present


# ---------------------------------------------------------------------------------------------
# Safe by construction


class RecordingClient:
    """The real client, keeping every SQL text it is given."""

    def __init__(self, client):
        self.client, self.statements = client, []

    def command(self, cmd, *args, **kwargs):
        self.statements.append(cmd)
        return self.client.command(cmd, *args, **kwargs)

    def query(self, query, *args, **kwargs):
        self.statements.append(query)
        return self.client.query(query, *args, **kwargs)


def tables(client) -> list[tuple[str, str, str]]:
    return client.query("SELECT database, name, engine FROM system.tables WHERE database NOT IN "
                        "('system', 'INFORMATION_SCHEMA', 'information_schema') ORDER BY ALL").result_rows


def test_names_and_paths_reach_the_engine_only_as_parameters(tmp_path):
    """The corpus, injection-shaped names included, under a raw folder named with quotes and a
    semicolon: no SQL text holds any of it, and no table appears or disappears."""
    raw = soak.materialize_corpus(CORPUS, tmp_path)
    soak.restore_permissions(raw)
    settings = Settings(raw_dir=raw, chdb_path=tmp_path / "warehouse")
    with session(settings) as client:
        load(settings, client, files=[])
        before = tables(client)
        recording = RecordingClient(client)
        result = load(settings, recording)  # type: ignore[arg-type]
        after = tables(client)
        injected = client.query("SELECT status, reason FROM bronze.ingest_log WHERE file_path = {p:String}",
                                parameters={"p": "orders/2026/03/25/orders_20260325'); DROP TABLE bronze.orders; "
                                                 "--.csv"}).result_rows

    assert result.landed and result.rejected
    assert injected == [("rejected", "bad_name")]
    assert after == before and ("bronze", "orders", "MergeTree") in after
    fragments = ["DROP TABLE", "'x'", "ü", str(raw), "2026/03", "order_items_2026", "größe", "O-2"]
    leaked = [(fragment, sql) for sql in recording.statements for fragment in fragments if fragment in sql]
    assert leaked == []


# ---------------------------------------------------------------------------------------------
# Locks and concurrency


def lock_file(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".pipeline.lock")


def test_a_second_run_waits_with_wait_or_says_so_in_one_line_and_nothing_is_corrupted(bench):
    space, base = bench
    warehouse = space.root / "concurrent"
    base.prepare(warehouse)
    output = open(space.root / "concurrent.out", "w+")  # noqa: SIM115 (dbt writes more than a pipe holds)
    first = subprocess.Popen(soak.ecom_command("run", "--quiet"), env=space.env(warehouse), cwd=space.project,
                             stdout=output, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while "process" not in (lock_file(warehouse).read_text() if lock_file(warehouse).exists() else ""):
            assert time.monotonic() < deadline and first.poll() is None, "the first run never took the lock"
            time.sleep(0.05)

        refused = space.run(["run", "--quiet"], warehouse, expect=(1,))
        started = time.monotonic()
        impatient = space.run(["run", "--quiet", "--wait", "1"], warehouse, expect=(1,))
        waited = time.monotonic() - started
        patient = space.run(["run", "--quiet", "--wait", "600"], warehouse, expect=(0,))
        assert first.wait(timeout=600) == 0, output.seek(0) or output.read()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        output.close()

    for result, notices in ((refused, 0), (impatient, 1)):  # with --wait, a line as the wait starts
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 + notices, result.stderr
        assert all(line.endswith("waiting up to 1 s for it") for line in lines[:-1]), result.stderr
        assert lines[-1].startswith("error: warehouse ") and "--wait" in lines[-1], result.stderr
        assert f"process {first.pid}" in lines[-1] and "Traceback" not in result.stderr
    assert 1 <= waited < 30
    assert "nothing new to land" in patient.stdout
    assert_same_as_clean_run(base.reference, warehouse)


@pytest.fixture
def tiny_disk(tmp_path) -> Path:
    """A 16 MiB tmpfs (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); disk full is not simulated")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_load_with_one_line_and_the_next_load_completes_it(bench, tiny_disk):
    space, base = bench
    warehouse = tiny_disk / "warehouse"
    env = ecom_env(space.raw_dir, warehouse)
    run_ecom("load", "--quiet", "--end", space.start.isoformat(), env=env)
    filler = tiny_disk / "filler"
    free = shutil.disk_usage(tiny_disk).free
    subprocess.run(["fallocate", "-l", str(free - 1_200_000), str(filler)], check=True)

    full = run_ecom("load", "--quiet", env=env, check=False)
    still_full = run_ecom("load", "--quiet", env=env, check=False)
    filler.unlink()
    freed = run_ecom("load", "--quiet", env=env, check=False)

    for result in (full, still_full):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert "free space" in lines[0] and "Traceback" not in result.stderr, lines
    assert "landing stopped at" in full.stderr and "NOT_ENOUGH_SPACE" in full.stderr
    assert freed.returncode == 0, freed.stderr
    assert_same_as_clean_run(bronze_of(base.reference), warehouse, ("bronze",))  # nothing rejected, lost, doubled


def unprivileged(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    prefix = soak.unprivileged_prefix()
    if prefix is None:
        pytest.skip("root without setpriv: file permissions cannot be made to apply")
    return subprocess.run([*prefix, *command], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_unwritable_or_misplaced_warehouse_directories_are_one_plain_line(tmp_path, bench):
    space, _ = bench
    locked = tmp_path / "locked"
    locked.mkdir()
    (tmp_path / "a-file").write_text("not a directory\n")
    read_only = tmp_path / "read-only-warehouse"
    read_only.mkdir()
    cases = {
        tmp_path / "a-file": "a file, not a directory, is in the way",
        tmp_path / "a-file" / "warehouse": "a file, not a directory, is in the way",
        read_only: "not writable",
        locked / "warehouse": "Permission denied",
    }
    read_only.chmod(0o555)
    locked.chmod(0o555)
    try:
        results = {path: unprivileged(str(BIN / "ecom"), "load", "--quiet", env=ecom_env(space.raw_dir, path))
                   for path in cases}
    finally:
        read_only.chmod(0o755)
        locked.chmod(0o755)
    for path, expected in cases.items():
        result = results[path]
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1, (path, result.stderr)
        assert expected in lines[0] and "ECOM_CHDB_PATH" in lines[0], lines[0]
    assert not any(read_only.iterdir()), "nothing was written into the read-only warehouse"
    assert not (tmp_path / "a-file.pipeline.lock").exists(), "no lock left beside a file in the warehouse's place"


# ---------------------------------------------------------------------------------------------
# Secrets and exposure


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_password_is_never_printed_or_logged(tmp_path):
    secret = f"pw-{random.Random().getrandbits(64):x}-never-shown"
    logs, target = tmp_path / "logs", tmp_path / "target"
    env = ecom_env(tmp_path / "raw", tmp_path / "warehouse", CLICKHOUSE_HOST="127.0.0.1",
                   CLICKHOUSE_PORT=str(closed_port()), CLICKHOUSE_USER="analyst", CLICKHOUSE_PASSWORD=secret,
                   DBT_LOG_PATH=str(logs), DBT_TARGET_PATH=str(target))
    env["DBT_TARGET"] = "server"
    (tmp_path / "raw" / "orders").mkdir(parents=True)
    results = [
        run_ecom("load", "--quiet", env=env, check=False, timeout=120),
        run_ecom("run", "--quiet", env=env, check=False, timeout=120),
        run_ecom("sql", "select 1", env=env, check=False, timeout=120),
        dbt("debug", "--target", "server", env=env, timeout=300),
    ]

    for result in results:
        assert result.returncode != 0, result  # the port is closed: every command fails, and fast
        assert secret not in result.stdout + result.stderr
    for result in results[:3]:
        assert "127.0.0.1" in result.stderr and "Traceback" not in result.stderr, result.stderr
    written = [path for path in (*logs.rglob("*"), *target.rglob("*")) if path.is_file()]
    assert any(path.name == "dbt.log" for path in written)
    assert [path for path in written if secret.encode() in path.read_bytes()] == []


# `dbt debug` once per case, in one process (dbt's own programmatic entry point): dbt's imports
# take longer than a case. Each case's output starts with a line naming it, ends with one saying
# whether dbt succeeded.
DEBUG_CASES = r"""
import json, os, sys
from dbt.cli.main import dbtRunner

project, cases = sys.argv[1], json.loads(sys.argv[2])
base = dict(os.environ)
for target, settings in cases:
    os.environ.clear()
    os.environ.update(base, **settings)
    print(f"=== {target} {settings}", flush=True)
    result = dbtRunner().invoke(["debug", "--target", target, "--project-dir", project, "--profiles-dir", project])
    print(f"\nsuccess={result.success} {result.exception}", flush=True)
"""


def test_dbt_alone_refuses_a_mistyped_port_or_secure_flag_by_name(tmp_path):
    """dbt reads the server settings from profiles.yml, not through `ecom`: a mistyped
    CLICKHOUSE_SECURE or CLICKHOUSE_PORT must stop it there too, not drop TLS and send the
    password in clear, or connect to another port; an empty CLICKHOUSE_HOST is the default."""
    env = ecom_env(tmp_path / "raw", tmp_path / "warehouse", CLICKHOUSE_HOST="127.0.0.1",
                   CLICKHOUSE_PORT=str(closed_port()), DBT_LOG_PATH=str(tmp_path / "logs"),
                   DBT_TARGET_PATH=str(tmp_path / "target"))
    cases = [*[(target, {"CLICKHOUSE_SECURE": "ture"}) for target in ("server", "cluster")],
             *[("server", {"CLICKHOUSE_PORT": port}) for port in ("http", "0", "65536", "8\N{SUPERSCRIPT TWO}")],
             ("cluster", {"CLICKHOUSE_SECURE": " On "}), ("server", {"CLICKHOUSE_HOST": " "})]
    run = subprocess.run([sys.executable, "-c", DEBUG_CASES, str(ROOT), json.dumps(cases)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    outputs = re.split(r"^=== ", run.stdout, flags=re.MULTILINE)[1:]
    assert len(outputs) == len(cases), run.stdout[-3000:] + run.stderr[-3000:]
    for output in outputs:
        assert "\nsuccess=False" in output, output  # refused, or the closed port

    for output in outputs[:2]:
        assert "CLICKHOUSE_SECURE=ture is neither on nor off" in output, output
        assert "Connection refused" not in output, "refused before connecting"
    for (_, settings), output in zip(cases[2:6], outputs[2:6], strict=True):
        assert f"CLICKHOUSE_PORT={settings['CLICKHOUSE_PORT']} is not a port number (1-65535)" in output, output
    assert "secure: True" in outputs[6] and "https://127.0.0.1" in outputs[6], outputs[6]
    assert "host: localhost" in outputs[7], "set but empty: the default, as `ecom` reads it"


def make_recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match, f"no `{target}` target in the Makefile"
    return match.group(1)


def test_the_dagster_ui_and_the_docs_server_listen_on_localhost_only():
    dev, docs = make_recipe("dev"), make_recipe("docs")
    assert re.search(r"dagster dev .*-h 127\.0\.0\.1\b", dev), dev
    assert re.search(r"dbt docs serve .*--host 127\.0\.0\.1\b", docs), docs
    assert "0.0.0.0" not in dev + docs


def test_credentials_come_from_the_environment_only():
    profiles = (ROOT / "profiles.yml").read_text()
    passwords = re.findall(r"^\s*password:\s*(.+)$", profiles, re.MULTILINE)
    assert passwords and all(p.strip() == "\"{{ env_var('CLICKHOUSE_PASSWORD', '') }}\"" for p in passwords)
    assert "password" not in repr(Settings(password="hunter2")) and "hunter2" not in repr(Settings(password="hunter2"))
