"""The `type: chdb` dbt adapter plugin: found by dbt, installable, and good for real dbt work.

Each dbt command is a process of the installed dbt's CLI (tests/dbt_fork.py), with its target and
log folders in tmp_path (never the checkout's target/), on a warehouse directory of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import BIN, ROOT, ecom_env, parsed_project, run_ecom
from conftest import dbt as dbt_command
from ecom.config import Settings
from ecom.warehouse import session


def dbt(*args: str, env: dict[str, str], project: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the installed dbt CLI (dbt_fork); `.output` holds stdout and stderr together."""
    result = dbt_command(*args, env=env, project=project, timeout=600)
    result.output = result.stdout + result.stderr
    return result


def dbt_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return ecom_env(tmp_path / "raw", tmp_path / "warehouse", DBT_TARGET_PATH=str(tmp_path / "target"),
                    DBT_LOG_PATH=str(tmp_path / "logs"), **extra)


def test_dbt_finds_the_plugin_in_the_adapters_namespace():
    from dbt.adapters.clickhouse import ClickHouseAdapter
    from dbt.adapters.factory import FACTORY

    import dbt.adapters

    portions = [Path(p) for p in dbt.adapters.__path__ if (Path(p) / "chdb" / "__init__.py").is_file()]
    assert portions, dbt.adapters.__path__

    from dbt.adapters.chdb import ChdbAdapter, ChdbCredentials, Plugin

    assert Plugin.adapter is ChdbAdapter and issubclass(ChdbAdapter, ClickHouseAdapter)
    assert Plugin.dependencies == ["clickhouse"]
    assert (Path(Plugin.include_path) / "dbt_project.yml").is_file()
    assert ChdbCredentials(path="x", schema="s").type == "chdb"
    assert FACTORY.load_plugin("chdb") is ChdbCredentials


# A project that needs nothing of this repository's models: seed, table, view, incremental, tests.
MINI_PROJECT = {
    "dbt_project.yml": "name: plugin_check\nversion: '1.0'\nconfig-version: 2\nprofile: plugin_check\n"
                       "flags:\n  send_anonymous_usage_stats: false\n",
    "profiles.yml": "plugin_check:\n  target: dev\n  outputs:\n    dev:\n      type: chdb\n"
                    "      path: \"{{ env_var('ECOM_CHDB_PATH') }}\"\n      schema: plugin_check\n"
                    "      threads: 4\n",
    "seeds/raw_colors.csv": "color_id,color_name\n1,red\n2,green\n3,blue\n",
    "models/colors.sql": "{{ config(materialized='table', engine='MergeTree', order_by='color_id') }}\n"
                         "select color_id, upper(color_name) as color_name from {{ ref('raw_colors') }}\n",
    "models/colors_view.sql": "select * from {{ ref('colors') }} where color_id > 1\n",
    "models/colors_incremental.sql": (
        "{{ config(materialized='incremental', unique_key='color_id', incremental_strategy='delete+insert',"
        " engine='MergeTree', order_by='color_id') }}\nselect color_id, color_name from {{ ref('colors') }}\n"
    ),
    "models/schema.yml": "version: 2\nmodels:\n  - name: colors\n    description: Colors, upper-cased.\n"
                         "    columns:\n      - name: color_id\n        description: The key.\n"
                         "        data_tests: [unique, not_null]\n  - name: colors_incremental\n"
                         "    columns:\n      - name: color_id\n        data_tests: [unique]\n",
    **{f"models/fanout_{i}.sql": f"select {i} as n, (select count() from {{{{ ref('colors') }}}}) as c\n"
       for i in range(1, 7)},
}


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="module")
def plain_project(tmp_path_factory) -> SimpleNamespace:
    """MINI_PROJECT with its warehouse in the project (a relative path in its profile), built whole
    by `dbt build` started in its models folder, where dbt finds the project by itself.

    `.project`, `.env`; `.first`, that build, with `.output` and `.results` (its run results).
    """
    root = tmp_path_factory.mktemp("plain")
    profile = MINI_PROJECT["profiles.yml"].replace("\"{{ env_var('ECOM_CHDB_PATH') }}\"", "data/warehouse")
    project = write_project(root / "project", {**MINI_PROJECT, "profiles.yml": profile})
    env = dbt_env(root)
    # The test run's saved parse is of this repository's project: given it, dbt would read it
    # only to parse this project in full every time, not once.
    env.pop("DBT_PARTIAL_PARSE_FILE_PATH", None)
    command = [str(BIN / "dbt"), "build", "--profiles-dir", str(project)]
    first = subprocess.run(command, env=env, cwd=project / "models", capture_output=True, text=True, timeout=600)
    first.output = first.stdout + first.stderr
    run_results = root / "target" / "run_results.json"
    first.results = json.loads(run_results.read_text())["results"] if run_results.exists() else []
    return SimpleNamespace(project=project, env=env, first=first)


def test_build_with_four_threads_and_docs_on_a_plain_project(plain_project):
    project, env, first = plain_project.project, plain_project.env, plain_project.first

    assert first.returncode == 0, first.output
    assert "Concurrency: 4 threads (target='dev')" in first.output
    results = first.results
    assert len(results) == 13 and {r["status"] for r in results} <= {"success", "pass"}
    assert len({r["thread_id"] for r in results}) > 1, "nodes ran on more than one thread"

    again = dbt("build", env=env, project=project)  # the incremental model's incremental path
    assert again.returncode == 0, again.output

    docs = dbt("docs", "generate", env=env, project=project)
    assert docs.returncode == 0, docs.output
    catalog = json.loads((Path(env["DBT_TARGET_PATH"]) / "catalog.json").read_text())
    assert set(catalog["nodes"]["model.plugin_check.colors"]["columns"]) == {"color_id", "color_name"}

    with session(Settings(chdb_path=project / "data" / "warehouse")) as client:
        assert client.query("SELECT color_name FROM plugin_check.colors ORDER BY color_id").result_rows == [
            ("RED",), ("GREEN",), ("BLUE",)
        ]
        assert client.command("SELECT count() FROM plugin_check.colors_incremental") == 3


def test_a_querys_columns_are_typed_without_running_it(tmp_path):
    """Contract checks ask the adapter for a query's columns. The engine types the query without
    building its `IN` sets: one that fails when built proves it (the inherited `SELECT * FROM
    (query) LIMIT 0` builds it)."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from dbt.adapters.chdb.connections import ChdbClient, ChdbCredentials

    client = ChdbClient(ChdbCredentials(path=str(tmp_path / "warehouse"), schema="default"))
    try:
        client.command("CREATE TABLE default.keys (k UInt64) ENGINE = MergeTree ORDER BY k")
        client.command("INSERT INTO default.keys SELECT number FROM numbers(10)")
        sql = "SELECT k, toString(k) AS s FROM default.keys WHERE k IN (SELECT throwIf(k = 3) FROM default.keys)"
        assert [(c.name, c.data_type) for c in client.columns_in_query(sql)] == [("k", "UInt64"), ("s", "String")]
        with pytest.raises(DatabaseError, match="throwIf"):
            client._client.query(f"SELECT * FROM ({sql}) LIMIT 0")
    finally:
        client.close()


def test_debug_build_and_docs_of_the_bronze_sources(tmp_path):
    day = tmp_path / "raw" / "orders" / "2026" / "03" / "01"
    day.mkdir(parents=True)
    (day / "orders_20260301.csv").write_text(
        "order_id,customer_id,order_ts,status,channel,currency,shipping_fee,order_discount,coupon_code,"
        "shipping_country,is_test,updated_at\nO-1,C-1,2026-03-01 10:00:00,paid,web,USD,0,0,,US,false,"
        "2026-03-01 10:00:00\n"
    )
    env = dbt_env(tmp_path)
    assert run_ecom("load", "--quiet", env=env).returncode == 0

    # DBT_TARGET set but empty, as `ecom` reads it: the dev target for plain dbt too.
    debug = dbt("debug", env={**env, "DBT_TARGET": ""})
    assert debug.returncode == 0 and "All checks passed!" in debug.output, debug.output
    assert "does not have a target named" not in debug.output, debug.output
    assert "adapter type: chdb" in debug.output
    assert f"  path: {env['ECOM_CHDB_PATH']}\n" in debug.output, debug.output  # the warehouse it opened

    build = dbt("build", "--select", "source:bronze", env=env)
    assert build.returncode == 0, build.output
    assert "Concurrency: 4 threads (target='dev')" in build.output
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    failed = [r["unique_id"] for r in results
              if r["status"] != ("success" if r["unique_id"].startswith("operation.") else "pass")]
    assert results and not failed, failed

    docs = dbt("docs", "generate", "--select", "source:bronze", env=env)
    assert docs.returncode == 0, docs.output
    catalog = json.loads((tmp_path / "target" / "catalog.json").read_text())
    orders = catalog["sources"]["source.ecom.bronze.orders"]
    assert {"order_id", "_batch_id", "_row_number"} <= set(orders["columns"])
    assert (orders["metadata"]["schema"], orders["metadata"]["name"]) == ("bronze", "orders")
    assert orders["columns"]["_row_number"]["type"] == "UInt64"


def test_the_wheel_ships_the_plugin_without_claiming_the_dbt_namespace(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"dbt/adapters/chdb/__init__.py", "dbt/adapters/chdb/connections.py", "dbt/adapters/chdb/impl.py",
            "dbt/include/chdb/__init__.py", "dbt/include/chdb/dbt_project.yml", "ecom/lock.py"} <= names
    # dbt-core owns these: a wheel that ships them overwrites dbt-core's on install.
    assert not names & {"dbt/__init__.py", "dbt/adapters/__init__.py", "dbt/include/__init__.py"}

    # A regular install: the wheel's files in a directory of their own next to the environment's
    # dbt-core, without the editable install's path entry (python -S skips every .pth file).
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                              "--target", str(target), str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    project = write_project(tmp_path / "project", MINI_PROJECT)
    script = (
        "import sys\n"
        f"sys.path[:0] = [{str(target)!r}]\n"
        f"sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
        "import dbt.adapters.chdb, dbt.include.chdb\n"
        "print(dbt.adapters.chdb.__file__)\n"
        "print(dbt.include.chdb.PACKAGE_PATH)\n"
        "from dbt.cli.main import dbtRunner\n"
        f"result = dbtRunner().invoke(['debug', '--project-dir', {str(project)!r},"
        f" '--profiles-dir', {str(project)!r}])\n"
        "sys.exit(0 if result.success else 1)\n"
    )
    run = subprocess.run([sys.executable, "-S", "-c", script], env=dbt_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    plugin_file, include_path = run.stdout.splitlines()[:2]
    assert plugin_file == str(target / "dbt" / "adapters" / "chdb" / "__init__.py")
    assert include_path == str(target / "dbt" / "include" / "chdb")
    assert "All checks passed!" in run.stdout


@pytest.mark.server
@pytest.mark.skipif(not os.environ.get("CLICKHOUSE_HOST"),
                    reason="CLICKHOUSE_HOST not set: server target not tested")
def test_dbt_debug_on_the_server_target(tmp_path):
    server = {k: v for k, v in os.environ.items() if k.startswith("CLICKHOUSE_")}
    env = dbt_env(tmp_path, **server)
    env["DBT_TARGET"] = "server"
    debug = dbt("debug", env=env)
    assert debug.returncode == 0 and "All checks passed!" in debug.output, debug.output


def test_a_relative_warehouse_path_is_resolved_once_against_the_project(tmp_path, monkeypatch):
    from dbt.adapters.chdb.connections import ChdbCredentials

    monkeypatch.delenv("DBT_PROJECT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    credentials = ChdbCredentials(path="data/warehouse", schema="default")
    monkeypatch.chdir("/")  # the engine may change the working directory while it starts
    assert credentials.path == str(tmp_path / "data" / "warehouse")
    # From a folder below a project, as dbt finds the project: the project's warehouse.
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    (tmp_path / "models" / "gold").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "models" / "gold")
    assert ChdbCredentials(path="data/warehouse", schema="default").path == str(tmp_path / "data" / "warehouse")


def test_dbt_from_a_folder_of_the_project_opens_the_projects_warehouse(plain_project):
    project, first = plain_project.project, plain_project.first
    assert first.returncode == 0, first.output
    with session(Settings(chdb_path=project / "data" / "warehouse")) as client:
        assert client.command("SELECT count() FROM plugin_check.colors") == 3
    assert not (project / "models" / "data").exists(), "no second warehouse where dbt was started"


# Values of the affinity minimum that a parse refuses: `| int` alone read 2.5 as 2.
REFUSED_AFFINITY_MINIMA = ("2.5", "0")


@pytest.fixture(scope="module")
def project_parses(tmp_path_factory) -> dict[str, tuple[bool, str, Path]]:
    """Whole parses of the project: the server and cluster targets (no partial parse), then the dev
    target with each refused affinity minimum. By what they parse: whether it passed, its output
    and its target folder."""
    root = tmp_path_factory.mktemp("parses")
    runs = {"server": ({"DBT_TARGET": "server"}, ["--no-partial-parse"]),
            "cluster": ({"DBT_TARGET": "cluster"}, ["--no-partial-parse"]),
            **{value: ({"DBT_TARGET": "dev"}, ["--vars", f"{{affinity_min_orders_together: {value}}}"])
               for value in REFUSED_AFFINITY_MINIMA}}
    parses = {}
    for name, (extra, args) in runs.items():
        parse = dbt("parse", *args, env=dbt_env(root / name, **extra))
        parses[name] = (parse.returncode == 0, parse.output, root / name / "target")
    return parses


def test_the_project_parses_for_every_target_with_its_table_engine(project_parses, tmp_path):
    # Parsing needs no server: hooks and configs render for the server and cluster targets here,
    # where their tests cannot run. On the cluster, tables and seeds are replicated.
    engines = {}
    for target in ("dev", "server", "cluster"):
        saved = parsed_project() if target == "dev" else None
        if saved:  # the test run's whole parse of the dev target (conftest.parsed_project)
            manifest = json.loads((saved.parent / "manifest.json").read_text())
        elif target == "dev":
            env = dbt_env(tmp_path / target, DBT_TARGET=target)
            parse = dbt("parse", "--no-partial-parse", env=env)
            assert parse.returncode == 0, (target, parse.output)
            manifest = json.loads((tmp_path / target / "target" / "manifest.json").read_text())
        else:
            passed, output, folder = project_parses[target]
            assert passed, (target, output)
            manifest = json.loads((folder / "manifest.json").read_text())
        engines[target] = {node["config"]["engine"] for node in manifest["nodes"].values()
                           if node["resource_type"] in ("model", "seed")
                           and node["config"]["materialized"] in ("table", "incremental", "seed")}
    assert engines == {"dev": {"MergeTree()"}, "server": {"MergeTree()"}, "cluster": {"ReplicatedMergeTree()"}}


def test_build_empty_then_build(tmp_path):
    # `--empty` reads every ref and source as no rows: the key tests are not scoped then (the
    # empty subquery has no part or block column) and no check insists on rows.
    env = dbt_env(tmp_path)
    run_ecom("generate", "--start", "2026-03-01", "--days", "2", "--orders-per-day", "30", "--quiet", env=env)
    run_ecom("load", "--quiet", env=env)
    empty = dbt("build", "--empty", "--exclude-resource-type", "unit_test", env=env)
    assert empty.returncode == 0, empty.output
    build = dbt("build", "--exclude-resource-type", "unit_test", env=env)
    assert build.returncode == 0, build.output
    with session(Settings(chdb_path=tmp_path / "warehouse")) as client:
        assert client.command("SELECT count() FROM gold.fct_orders") > 0


def test_a_build_before_any_load_says_bronze_is_not_loaded(tmp_path):
    env = dbt_env(tmp_path)
    seed = dbt("seed", env=env)
    assert seed.returncode == 0, seed.output
    assert "bronze is not loaded on this target (no database bronze): land the raw files first" in seed.output
    (tmp_path / "no-exports").mkdir()  # nothing to land: bronze made
    run_ecom("load", "--quiet", env={**env, "ECOM_RAW_DIR": str(tmp_path / "no-exports")})
    seed = dbt("seed", env=env)
    assert seed.returncode == 0 and "bronze is not loaded" not in seed.output, seed.output


def test_show_of_no_rows_keeps_the_header(tmp_path):
    show = dbt("show", "--inline", "select 1 as order_count, 'x' as label where 0", env=dbt_env(tmp_path))
    assert show.returncode == 0, show.output
    assert "| order_count | label |" in show.output, show.output


def test_the_affinity_minimum_must_be_a_whole_number(project_parses):
    # `| int` alone read 2.5 as 2: the mart kept pairs its own test then failed. (Each value is a
    # whole parse of the project; `abc` takes the branch 2.5 takes.)
    for value in REFUSED_AFFINITY_MINIMA:
        passed, output, _ = project_parses[value]
        assert not passed, value
        assert f"must be a whole number of 1 or more, got {value}" in output, value
