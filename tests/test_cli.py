"""The `ecom` command line as a user runs it (the installed console script), and its settings."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from conftest import BIN, ROOT, ecom_env, run_ecom
from ecom import warehouse
from ecom.cli import main
from ecom.config import SettingError, Settings
from ecom.contract import MAX_ORDERS_PER_DAY, MAX_SEED
from ecom.lock import WarehouseUnavailable
from ecom.warehouse import connect

ORDER_ITEMS_HEADER = "order_id,line_number,product_id,quantity,unit_price,line_discount\n"


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return ecom_env(tmp_path / "raw", tmp_path / "warehouse")


@pytest.fixture
def sql_env(env) -> dict[str, str]:
    """An empty warehouse: `ecom sql` reads only one that is there."""
    Path(env["ECOM_CHDB_PATH"]).mkdir()
    return env


def test_help_of_the_group_and_of_every_command(env):
    top = run_ecom("--help", env=env)
    assert top.returncode == 0
    assert {"generate", "load", "run", "sql"} <= set(main.commands)
    for name in main.commands:
        assert name in top.stdout
    expected_options = {
        "generate": ["--start", "--days", "--orders-per-day", "--seed", "--dirty-rate", "--out"],
        "load": ["--raw-dir", "--start", "--end", "--wait"],
        "run": ["--date", "--start", "--end"],
        "sql": ["QUERY", "--limit", "--wait"],
    }
    for name in main.commands:
        result = run_ecom(name, "--help", env=env)
        assert result.returncode == 0, result.stderr
        assert f"Usage: ecom {name}" in result.stdout
        for option in expected_options.get(name, []):
            assert option in result.stdout, (name, option)


def test_sql_prints_a_table(sql_env):
    result = run_ecom("sql", "select 1 as x, 'two' as label, number as n from numbers(3) order by n", env=sql_env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [cell.strip() for cell in lines[0].split("|")] == ["x", "label", "n"]
    assert set(lines[1]) <= {"-", "+"}
    assert [[cell.strip() for cell in line.split("|")] for line in lines[2:5]] == [
        ["1", "two", "0"], ["1", "two", "1"], ["1", "two", "2"]
    ]
    assert lines[-1] == "(3 rows)"


def test_a_bad_query_is_one_line_on_stderr(sql_env):
    result = run_ecom("sql", "select no_such_column", env=sql_env, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    line = one_error_line(result.stderr)
    assert "no_such_column" in line and "Stack trace" not in line


def test_sql_only_reads(env):
    raw = Path(env["ECOM_RAW_DIR"])
    path = raw / "order_items" / "2026" / "03" / "01" / "order_items_20260301.csv"
    path.parent.mkdir(parents=True)
    path.write_text(ORDER_ITEMS_HEADER + "O-1,1,P-1,2,9.99,\n")
    run_ecom("load", "--quiet", env=env)

    for statement in ("truncate table bronze.order_items", "insert into bronze.ingest_log (file_path) values ('x')",
                      "drop table bronze.order_items", "set readonly = 0"):
        result = run_ecom("sql", statement, env=env, check=False)
        assert result.returncode == 1, statement
        assert "only reads" in one_error_line(result.stderr) or "readonly" in result.stderr, result.stderr
        assert "Code:" not in result.stderr and "Exception" not in result.stderr, result.stderr
    result = run_ecom("sql", "select 1 settings readonly = 0", env=env, check=False)
    assert one_error_line(result.stderr).startswith("error: Cannot modify 'readonly' setting"), result.stderr

    counts = run_ecom("sql", "select (select count() from bronze.order_items) as lines, "
                             "(select count() from bronze.ingest_log) as files settings max_threads = 1", env=env)
    assert [cell.strip() for cell in counts.stdout.splitlines()[2].split("|")] == ["1", "1"]


def test_sql_refuses_what_the_session_would_let_write_a_file(sql_env, tmp_path):
    # The embedded engine runs these under `readonly = 2`: each would write any file this user can.
    target = tmp_path / "written.csv"
    kept = tmp_path / "kept.csv"
    kept.write_text("precious\n")
    for statement in (f"insert into function file('{target}', 'CSV') select 1",
                      f"select 1 into outfile '{target}'",
                      f"explain select 1 into outfile '{target}'",
                      # The pipeline of an INSERT is built up to its output: the file is created, or emptied.
                      f"explain pipeline insert into function file('{target}', 'CSV') select 1",
                      f"explain pipeline graph = 1 insert into function file('{kept}', 'CSV', 'a String') "
                      "select 'x' settings engine_file_truncate_on_insert = 1"):
        result = run_ecom("sql", statement, env=sql_env, check=False)
        assert result.returncode == 1, (statement, result.stdout)
        assert "only reads" in one_error_line(result.stderr), result.stderr
        assert not target.exists() and kept.read_text() == "precious\n", statement
    # The pipeline of a SELECT is a read; the syntax tree of anything only parses it.
    result = run_ecom("sql", "explain pipeline select count() from system.one", env=sql_env)
    assert "AggregatingTransform" in result.stdout, result.stdout
    result = run_ecom("sql", f"explain ast insert into function file('{target}', 'CSV') select 1", env=sql_env)
    assert "InsertQuery" in result.stdout and not target.exists(), result.stdout
    # A string that looks like the clause is a string.
    result = run_ecom("sql", "select 'into outfile' as clause -- a comment; not a second statement", env=sql_env)
    assert result.stdout.splitlines()[2].strip() == "into outfile"


def test_sql_runs_one_statement_and_prints_a_table(sql_env):
    result = run_ecom("sql", "select 1 as a; select 'x' as b, 2 as c", env=sql_env, check=False)
    assert result.returncode == 1
    assert "one statement at a time" in one_error_line(result.stderr)
    for clause in ("format JSON", "format Native"):  # the client asks for a format of its own
        result = run_ecom("sql", f"select 1 as a {clause}", env=sql_env, check=False)
        assert result.returncode == 1
        assert "leave out the FORMAT clause" in one_error_line(result.stderr)
    assert run_ecom("sql", "select 1 as a;", env=sql_env).stdout.splitlines()[-1] == "(1 rows)"
    # A file's query that starts with a comment, after `--` as the help says.
    pasted = run_ecom("sql", "--", "-- the day's figures\nselect 2 as b", env=sql_env).stdout.splitlines()
    assert pasted[0].strip() == "b" and pasted[2].strip() == "2"
    words = run_ecom("sql", "select 'a format b' as a", env=sql_env).stdout.splitlines()
    assert words[2] == "a format b"
    # A column named FORMAT is not the clause; a line end in a value stays in its row.
    named = run_ecom("sql", "select number as FORMAT, 'a\\nb\\tc' as text from numbers(2)", env=sql_env).stdout
    assert named.splitlines()[2:] == ["     0 | a\\nb\\tc", "     1 | a\\nb\\tc", "(2 rows)"], named
    # Nor does any other control character reach the terminal: not an escape sequence of a value.
    controls = run_ecom("sql", "select 'A\\x1b[2J\\x00\\x0b\\xc2\\x85\\xe2\\x80\\xa8B' as `t\\x1b[2J`",
                        env=sql_env).stdout
    assert controls.splitlines()[0] == "t\\x1b[2J", controls  # nor of a column's name
    assert controls.splitlines()[2] == "A\\x1b[2J\\x00\\x0b\\x85\\u2028B", controls
    # A wide character takes two columns of the terminal, a combining accent none.
    wide = run_ecom("sql", "select arrayJoin(['日本語', 'abc', 'e\u0301te']) as name, 1 as n", env=sql_env).stdout
    assert wide.splitlines()[2:5] == ["日本語 | 1", "abc    | 1", "e\u0301te    | 1"], wide
    # Decimals are numbers too: right-aligned, as money reads.
    money = run_ecom("sql", "select arrayJoin([toDecimal64(1.5, 2), toDecimal64(10.25, 2)]) as d", env=sql_env).stdout
    assert money.splitlines()[:4] == ["    d", "-----", " 1.50", "10.25"], money
    # No rows: the header still says what the columns are.
    empty = run_ecom("sql", "select 1 as order_count, 'x' as label where 0", env=sql_env).stdout.splitlines()
    assert [cell.strip() for cell in empty[0].split("|")] == ["order_count", "label"] and empty[-1] == "(0 rows)"
    # The same with LIMIT 0, which the client takes for a probe of the columns when a query ends in it.
    empty = run_ecom("sql", "select 1 as order_count limit 0", env=sql_env).stdout.splitlines()
    assert empty[0].strip() == "order_count" and empty[-1] == "(0 rows)"
    # A SYSTEM statement is refused as one that does not only read, not as a syntax error.
    result = run_ecom("sql", "system flush logs", env=sql_env, check=False)
    assert result.returncode == 1 and "only reads" in one_error_line(result.stderr), result.stderr
    # A syntax error lists what the engine expected, whole, without the statement it formatted.
    result = run_ecom("sql", "select 1 frm x where", env=sql_env, check=False)
    line = one_error_line(result.stderr)
    assert result.returncode == 1 and line.startswith("error: Syntax error") and line.endswith("end of query"), line


def test_sql_limit_stops_the_query_itself(sql_env):
    # Blocks of 100 rows: the engine stops after the first when --limit reaches it; printing only
    # the first rows of the whole result would reach the row that throws.
    result = run_ecom("sql", "select number, throwIf(number = 100000, 'read past the limit') as t "
                             "from numbers(200000) settings max_block_size = 100", "--limit", "3", env=sql_env)
    lines = result.stdout.splitlines()
    assert [line.split("|")[0].strip() for line in lines[2:5]] == ["0", "1", "2"]
    assert lines[-1].startswith("(first 3 rows shown; the query returns more"), lines[-1]
    assert run_ecom("sql", "select number from numbers(3)", "--limit", "3", env=sql_env).stdout.splitlines()[-1] \
        == "(3 rows)"
    # The largest limit the engine takes (one more is sent), and one above it: refused as an option.
    most = str(2**63 - 2)
    assert run_ecom("sql", "select 1", "--limit", most, env=sql_env).stdout.splitlines()[-1] == "(1 rows)"
    above = run_ecom("sql", "select 1", "--limit", str(2**64 - 1), env=sql_env, check=False)
    assert above.returncode == 2 and f"is not in the range 0<=x<={most}" in above.stderr, above.stderr


def test_a_question_mark_in_the_warehouse_path_is_refused(env, tmp_path):
    # chDB would open the path before the '?' and take its lock there.
    env = {**env, "ECOM_CHDB_PATH": str(tmp_path / "wh?x=1")}
    result = run_ecom("sql", "select 1", env=env, check=False)
    assert result.returncode == 1
    assert "has a '?'" in one_error_line(result.stderr)
    assert not (tmp_path / "wh").exists() and not (tmp_path / "wh?x=1").exists()
    # The default path below a folder whose name has one, too.
    (tmp_path / "q?x").mkdir()
    result = run_ecom("sql", "select 1", env={k: v for k, v in env.items()
                                              if k not in ("ECOM_CHDB_PATH", "ECOM_PROJECT_DIR")},
                      cwd=tmp_path / "q?x", check=False)
    assert "has a '?'" in one_error_line(result.stderr)
    assert not (tmp_path / "q").exists()


def test_sql_names_the_warehouse_it_looked_in(env):
    result = run_ecom("sql", "select * from gold.mart_daily_sales", env=env, check=False)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert env["ECOM_CHDB_PATH"] in line and "ecom run" in line, line
    assert not Path(env["ECOM_CHDB_PATH"]).exists(), "a mistyped path stays a mistake, not a new warehouse"


def test_a_range_that_ends_before_it_starts_is_refused(env):
    for command in ("load", "run"):
        result = run_ecom(command, "--start", "2026-03-02", "--end", "2026-03-01", env=env, check=False)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "--start 2026-03-02 is after --end 2026-03-01" in result.stderr


def test_generate_refuses_a_world_older_than_the_fx_rates(env, tmp_path):
    result = run_ecom("generate", "--start", "2014-12-31", "--days", "2", "--quiet", "--out", str(tmp_path / "old"),
                      env=env, check=False)
    assert result.returncode == 2
    assert "--start 2014-12-31 is before 2015-01-01, the first month of the FX rates" in result.stderr
    assert not (tmp_path / "old").exists()


def test_generate_into_a_file_is_one_error_line(env, tmp_path):
    (tmp_path / "afile").write_text("")
    result = run_ecom("generate", "--days", "1", "--orders-per-day", "2", "--quiet", "--out",
                      str(tmp_path / "afile"), env=env, check=False)
    assert result.returncode == 1
    assert "give --out a directory" in one_error_line(result.stderr)
    result = run_ecom("generate", "--days", "1", "--orders-per-day", "2", "--quiet",
                      env={**env, "ECOM_RAW_DIR": str(tmp_path / "afile")}, check=False)
    assert "give ECOM_RAW_DIR a directory" in one_error_line(result.stderr)


def test_generate_refuses_a_world_too_large_for_memory_in_one_line(env, tmp_path):
    result = run_ecom("generate", "--start", "2015-01-01", "--days", "49000", "--orders-per-day", "1", "--quiet",
                      "--out", str(tmp_path / "big"), env=env, check=False)
    assert result.returncode == 1
    assert "use fewer --orders-per-day or --days" in one_error_line(result.stderr)
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize(("option", "value"), [("--orders-per-day", str(MAX_ORDERS_PER_DAY + 1)),
                                               ("--orders-per-day", str(10**21)),
                                               ("--seed", "-1"), ("--seed", str(MAX_SEED + 1))])
def test_generate_refuses_a_day_too_large_for_memory_or_a_seed_out_of_range(env, tmp_path, option, value):
    """A day's files are built in memory: 20 million orders a day ran out of memory with a
    traceback. Seeds that Faker (32 bits) or numpy (64 bits) would wrap wrote another seed's files."""
    result = run_ecom("generate", "--days", "1", option, value, "--quiet", "--out", str(tmp_path / "big"),
                      env=env, check=False)
    assert result.returncode == 2
    assert f"Invalid value for '{option}': {value} is not in the range" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "big").exists()


def test_a_bad_path_from_the_environment_names_the_variable(env, tmp_path):
    result = run_ecom("report", env={**env, "ECOM_REPORT_PATH": str(tmp_path)}, check=False)
    assert result.returncode == 2
    assert "'--out' (or env ECOM_REPORT_PATH)" in result.stderr and "is a directory" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("variable", ["DBT_TARGET_PATH", "DBT_LOG_PATH"])
def test_a_dbt_folder_inside_a_file_is_refused_before_anything_lands(env, tmp_path, variable):
    (tmp_path / "afile").write_text("")
    run_ecom("generate", "--days", "1", "--orders-per-day", "2", "--quiet", env=env)
    result = run_ecom("run", "--quiet", env={**env, variable: str(tmp_path / "afile" / "dbt")}, check=False)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert f"{variable} is {tmp_path / 'afile' / 'dbt'}, but {tmp_path / 'afile'} is a file" in line, line
    assert not (tmp_path / "warehouse").exists(), "nothing landed"
    result = run_ecom("run", "--quiet", env={**env, variable: str(tmp_path / ("x" * 300) / "dbt")}, check=False)
    assert result.returncode == 1
    assert f"{variable} is " in one_error_line(result.stderr) and "File name too long" in result.stderr
    # A folder nobody can make, whatever the rights above say (a root user may write /proc itself).
    result = run_ecom("run", "--quiet", env={**env, variable: "/proc/ecom-dbt"}, check=False)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {variable} is /proc/ecom-dbt") and f"point {variable} at a folder" in line, line
    assert not (tmp_path / "warehouse").exists(), "nothing landed"


def test_a_dbt_that_cannot_start_is_named_not_a_traceback(tmp_path, monkeypatch):
    from ecom import cli

    (tmp_path / "dbt").write_text("")  # there, but not executable
    for missing in (tmp_path / "dbt", tmp_path / "nothing-here"):
        monkeypatch.setattr(cli, "dbt_executable", lambda missing=missing: str(missing))
        with pytest.raises(SettingError, match=rf"^cannot start dbt \({re.escape(str(missing))}\): .*; run `make"):
            cli.dbt("--version")


def test_a_build_that_stops_before_its_first_node_points_at_no_earlier_results(env, tmp_path):
    """A project dbt cannot read writes no run_results.json: the one there is an earlier build's,
    and the error must not send the user to it."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "seeds", project / "seeds")  # read by the run before dbt starts
    shutil.copy(ROOT / "profiles.yml", project)
    text = (ROOT / "dbt_project.yml").read_text()
    (project / "dbt_project.yml").write_text(text.replace("name: ", "name: [unclosed ", 1))
    results = Path(env["DBT_TARGET_PATH"]) / "run_results.json"
    results.parent.mkdir(parents=True)
    results.write_text("{}")
    os.utime(results, (0, 0))
    run_ecom("generate", "--days", "1", "--orders-per-day", "2", "--quiet", env=env)
    result = run_ecom("run", "--quiet", env={**env, "ECOM_PROJECT_DIR": str(project)}, check=False)
    assert result.returncode == 1
    assert "Syntax error near line" in result.stderr, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == "error: dbt build failed; see the log above", result.stderr[-2000:]


def test_settings_read_after_the_load_are_checked_before_it(env, tmp_path, run_to_a_gone_reader):
    # dbt reads the lock wait, and the project folder is where it builds: wrong, they stopped the run
    # after the files had landed. The files: the exports of the fixture's run, into this warehouse.
    gone_env, gone = run_to_a_gone_reader
    env = {**env, "ECOM_RAW_DIR": gone_env["ECOM_RAW_DIR"]}
    for variable, value, told in (
            ("ECOM_LOCK_WAIT_SECONDS", "abc", "ECOM_LOCK_WAIT_SECONDS='abc' must be a number"),
            ("ECOM_PROJECT_DIR", str(tmp_path), f"ECOM_PROJECT_DIR={tmp_path} has no dbt_project.yml")):
        result = run_ecom("run", "--quiet", env={**env, variable: value}, check=False)
        assert result.returncode == 1
        assert told in one_error_line(result.stderr), result.stderr
        assert not Path(env["ECOM_CHDB_PATH"]).exists(), "nothing landed"
    # With --wait, dbt gets the wait from ecom: the variable is not read, so not refused. That run
    # (the fixture's) failed at nothing but writing its results for a reader gone.
    assert [line for line in gone.stderr.splitlines() if line.startswith("error: ")] == [
        "error: could not write the results to stdout (Broken pipe)"], gone.stderr[-2000:]


@pytest.mark.parametrize("command", [("generate", "--out"), ("load", "--raw-dir"), ("report", "--out")])
def test_an_empty_path_is_refused_not_read_as_the_working_directory(env, tmp_path, command):
    (work := tmp_path / "work").mkdir()
    result = run_ecom(*command, "", env=env, cwd=work, check=False)
    assert result.returncode == 2
    assert f"'{command[1]}'" in result.stderr and "is empty" in result.stderr
    assert not list(work.iterdir())


def test_load_twice_then_rejects_and_exit_status(env):
    raw = Path(env["ECOM_RAW_DIR"])
    good = raw / "order_items" / "2026" / "03" / "01" / "order_items_20260301.csv"
    good.parent.mkdir(parents=True)
    good.write_text(ORDER_ITEMS_HEADER + 'O-1,1,P-1,2,9.99,\nO-1,2,"P,2",1,5.00,0.50\n')

    first = run_ecom("load", "--quiet", env=env)
    assert first.returncode == 0, first.stderr
    assert "landed 1 file, 2 rows; rejected 0; skipped 0" in first.stdout

    second = run_ecom("load", "--quiet", env=env)
    assert second.returncode == 0, second.stderr
    assert "landed 0 files, 0 rows" in second.stdout
    assert "nothing new to land" in second.stdout and "already landed" in second.stdout

    bad = raw / "order_items" / "2026" / "03" / "02" / "order_items_20260302.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("id;qty\n1;2\n")
    more = good.with_name("order_items_20260301_part2.csv")
    more.write_text(ORDER_ITEMS_HEADER + "O-2,1,P-1,1,9.99,\n")

    third = run_ecom("load", "--quiet", env=env)
    assert third.returncode == 3, third.stdout + third.stderr
    assert "landed 1 file, 1 row; rejected 1" in third.stdout
    assert "rejected order_items/2026/03/02/order_items_20260302.csv: wrong_header" in third.stderr
    assert bad.exists()

    counts = run_ecom("sql", "select status, count() as files, sum(rows) as rows from bronze.ingest_log "
                             "group by status order by status", env=env)
    assert [line.split("|")[0].strip() for line in counts.stdout.splitlines()[2:4]] == ["landed", "rejected"]
    assert [line.split("|")[2].strip() for line in counts.stdout.splitlines()[2:4]] == ["3", "0"]


@pytest.fixture(scope="module")
def run_to_a_gone_reader(tmp_path_factory) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    """`ecom run --wait 1 | head -1` on a world's first day, with ECOM_LOCK_WAIT_SECONDS='abc': one
    whole build for the two tests that read what it did."""
    base = tmp_path_factory.mktemp("gone-reader")
    env = ecom_env(base / "raw", base / "warehouse")
    run_ecom("generate", "--start", "2026-09-01", "--days", "1", "--orders-per-day", "20", "--quiet", env=env)
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([str(BIN / "ecom"), "run", "--wait", "1", "--quiet"],
                                env={**env, "ECOM_LOCK_WAIT_SECONDS": "abc"}, cwd=ROOT, stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=600)
    finally:
        os.close(write)
    return env, result


def test_a_reader_gone_from_stdout_stops_no_work(run_to_a_gone_reader):
    # `ecom run | head -1`: the load's counts go out before dbt's build, which must still run;
    # the command then says why it exits 1. A full disk under stdout is one line too.
    env, result = run_to_a_gone_reader
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == "error: could not write the results to stdout (Broken pipe)", \
        result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "\x1b" not in result.stderr  # dbt's colours are for a terminal, not for a log
    assert run_ecom("sql", "select count() > 0 from gold.fct_orders", env=env).stdout.splitlines()[2].strip() == "1"
    with open("/dev/full", "w") as full:
        result = subprocess.run([str(BIN / "ecom"), "sql", "select 1"], env=env, cwd=ROOT, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 1
    assert "(No space left on device)" in one_error_line(result.stderr)
    # Started with stdout closed (`>&-`): nothing to write, nothing went wrong.
    run_ecom("generate", "--start", "2026-09-02", "--days", "1", "--orders-per-day", "20", "--quiet", env=env)
    result = subprocess.run([str(BIN / "ecom"), "load", "--quiet"], env=env, cwd=ROOT, preexec_fn=lambda: os.close(1),
                            stderr=subprocess.PIPE, text=True, timeout=300)
    assert (result.returncode, result.stderr) == (0, "")
    # Started with stderr closed (`2>&-`): the warehouse opens all the same, the results come.
    result = subprocess.run([str(BIN / "ecom"), "sql", "select 7 as n"], env=env, cwd=ROOT,
                            preexec_fn=lambda: os.close(2), stdout=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.splitlines()[2].strip() == "7", result


def test_load_without_a_raw_directory(env):
    result = run_ecom("load", env=env, check=False)
    assert result.returncode == 1
    assert env["ECOM_RAW_DIR"] in one_error_line(result.stderr)


def test_the_folder_above_the_raw_exports_is_refused_before_anything_is_logged(env, tmp_path):
    # Every export would be rejected as misnamed and logged so: the error names the folder to use.
    raw = tmp_path / "exports" / "raw"
    (raw / "orders" / "2026" / "03" / "01").mkdir(parents=True)
    for command in ("load", "run"):
        result = run_ecom(command, "--quiet", env={**env, "ECOM_RAW_DIR": str(raw.parent)}, check=False)
        assert result.returncode == 1, (command, result.stdout)
        line = one_error_line(result.stderr)
        assert f"but {raw} has: point ECOM_RAW_DIR" in line, line
    # One entity's folder, or one of its date folders.
    for inside in (raw / "orders", raw / "orders" / "2026" / "03"):
        result = run_ecom("load", "--quiet", env={**env, "ECOM_RAW_DIR": str(inside)}, check=False)
        assert result.returncode == 1
        assert f"{raw / 'orders'}, one entity's folder: point ECOM_RAW_DIR (or --raw-dir) at {raw}," in \
            one_error_line(result.stderr)
    # Date folders without their entity folder.
    (tmp_path / "flat" / "2026" / "03" / "01").mkdir(parents=True)
    result = run_ecom("load", "--quiet", env={**env, "ECOM_RAW_DIR": str(tmp_path / "flat")}, check=False)
    assert "has year folders (2026) but no entity folder" in one_error_line(result.stderr)
    assert not Path(env["ECOM_CHDB_PATH"]).exists()
    # Exports kept aside in a folder the loader leaves alone (`_archive`) do not count.
    kept = tmp_path / "kept"
    (kept / "_archive" / "orders").mkdir(parents=True)
    result = run_ecom("load", "--quiet", env={**env, "ECOM_RAW_DIR": str(kept)}, check=False)
    assert result.returncode == 0 and f"nothing to land: no raw files found in {kept} (" in result.stderr, \
        result.stderr
    # A day asked for without exports (a mistyped day): the warning names it and the folder.
    result = run_ecom("load", "--quiet", "--start", "2026-04-10", "--end", "2026-04-10",
                      env={**env, "ECOM_RAW_DIR": str(kept)}, check=False)
    assert f"no raw files found in {kept} for 2026-04-10 (" in result.stderr, result.stderr
    # Also when a file rejected before (misnamed: it belongs to no day, so every load reads it) is all
    # there is: "nothing new to land: 0 files already landed" said nothing of the day.
    (kept / "orders.csv").write_text("order_id\n")
    assert run_ecom("load", "--quiet", env={**env, "ECOM_RAW_DIR": str(kept)}, check=False).returncode == 3
    result = run_ecom("load", "--quiet", "--start", "2026-04-10", "--end", "2026-04-10",
                      env={**env, "ECOM_RAW_DIR": str(kept)}, check=False)
    assert result.returncode == 0, result.stderr
    assert f"no raw files found in {kept} for 2026-04-10, only 1 file rejected before whose names give no day (" \
        in result.stderr, result.stderr + result.stdout
    # A file of the day itself that stays rejected is no missing day.
    (day := kept / "orders" / "2026" / "04" / "10").mkdir(parents=True)
    (day / "orders_20260410.csv").write_text("order_id\n")
    for _ in range(2):
        result = run_ecom("load", "--quiet", "--start", "2026-04-10", "--end", "2026-04-10",
                          env={**env, "ECOM_RAW_DIR": str(kept)}, check=False)
    assert "no raw files found" not in result.stderr, result.stderr
    assert "nothing new to land\n2 files stay rejected from earlier loads" in result.stdout, result.stdout


def test_a_warehouse_path_that_cannot_hold_a_warehouse_is_refused(env):
    raw = Path(env["ECOM_RAW_DIR"])
    raw.mkdir()
    cases = {"/": "is the root of the file system", str(raw): f"are one folder, {raw}"}
    for path, reason in cases.items():
        result = run_ecom("load", env={**env, "ECOM_CHDB_PATH": path}, check=False)
        assert result.returncode == 1, path
        assert reason in one_error_line(result.stderr), (path, result.stderr)
    assert sorted(raw.iterdir()) == []
    # Inside the raw folder, where the loader looks for no export, a warehouse is one like any other.
    result = run_ecom("load", "--quiet", env={**env, "ECOM_CHDB_PATH": str(raw / "_warehouse")}, check=False)
    assert result.returncode == 0, result.stderr


def test_a_folder_of_other_files_is_no_warehouse(env):
    """The engine would write its folders among the files of a folder that is not a warehouse."""
    raw = Path(env["ECOM_RAW_DIR"])
    docs = raw.parent / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("mine\n")
    for args in (("load",), ("sql", "select 1")):
        result = run_ecom(*args, env={**env, "ECOM_CHDB_PATH": str(docs)}, check=False)
        assert result.returncode == 1, result.stderr
        assert one_error_line(result.stderr) == (
            f"error: ECOM_CHDB_PATH={docs.resolve()} is a folder of other files, not a warehouse: the engine would "
            "write its own folders among them; set ECOM_CHDB_PATH to a new or empty folder, or to a warehouse")
    assert [p.name for p in docs.iterdir()] == ["notes.txt"]
    # `data` typed for `data/warehouse`: a folder of folders, one of them a warehouse.
    data = raw.parent / "data"
    (data / "warehouse" / "metadata").mkdir(parents=True)
    (data / "dagster").mkdir()
    for args in (("load",), ("sql", "select 1"), ("report",)):
        result = run_ecom(*args, env={**env, "ECOM_CHDB_PATH": str(data)}, check=False)
        assert result.returncode == 1, result.stderr
        assert one_error_line(result.stderr) == (
            f"error: ECOM_CHDB_PATH={data.resolve()} is not a warehouse but holds one, {data.resolve() / 'warehouse'}: "
            f"the engine would make a new, empty one beside it; set ECOM_CHDB_PATH to {data.resolve() / 'warehouse'}")
    assert sorted(p.name for p in data.iterdir()) == ["dagster", "warehouse"]
    assert not raw.exists(), "refused before anything ran"
    # An empty folder is a warehouse to be: a read leaves the engine's `tmp` there, and a load builds on it.
    empty = raw.parent / "empty"
    empty.mkdir()
    raw.mkdir()
    run_ecom("sql", "select 1", env={**env, "ECOM_CHDB_PATH": str(empty)})
    assert [p.name for p in empty.iterdir()] == ["tmp"]
    result = run_ecom("load", env={**env, "ECOM_CHDB_PATH": str(empty)}, check=False)
    assert result.returncode == 0 and (empty / "metadata").is_dir(), result.stderr
    # Folders are not files of someone else's: a volume's lost+found, a hidden file, the raw folder.
    volume = raw.parent / "volume"
    (volume / "lost+found").mkdir(parents=True)
    (volume / ".DS_Store").write_text("")
    (volume / "raw").mkdir()
    result = run_ecom("load", env={**env, "ECOM_CHDB_PATH": str(volume), "ECOM_RAW_DIR": str(volume / "raw")},
                      check=False)
    assert result.returncode == 0 and (volume / "metadata").is_dir(), result.stderr
    # A command that does not read the raw folder works whatever it is set to.
    loop = raw.parent / "loop"
    loop.symlink_to(loop)
    result = run_ecom("sql", "select 1", env={**env, "ECOM_CHDB_PATH": str(empty), "ECOM_RAW_DIR": str(loop)})
    assert result.returncode == 0, result.stderr


def test_a_folder_this_user_cannot_search_does_not_hide_the_others(tmp_path):
    """A volume's root: its lost+found is root's alone. Looking into it for a warehouse failed, and
    the whole check with it, so the engine would have written among the user's files."""
    from ecom.soak import unprivileged_prefix

    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("root without setpriv: file permissions cannot be made to apply")
    volume = tmp_path / "volume"
    (volume / "lost+found").mkdir(parents=True)
    (volume / "notes.txt").write_text("mine\n")
    (volume / "lost+found").chmod(0)
    try:
        result = subprocess.run([*prefix, str(BIN / "python"), "-c", "import sys; from ecom.config import "
                                 "chdb_path_problem; print(chdb_path_problem(sys.argv[1]))", str(volume)],
                                capture_output=True, text=True, timeout=60)
    finally:
        (volume / "lost+found").chmod(0o700)
    assert result.stdout.strip() == (
        f"ECOM_CHDB_PATH={volume} is a folder of other files, not a warehouse: the engine would write its own "
        "folders among them; set ECOM_CHDB_PATH to a new or empty folder, or to a warehouse"), result.stderr


@pytest.mark.parametrize("variable", ["ECOM_CHDB_PATH", "ECOM_RAW_DIR", "ECOM_PROJECT_DIR", "DBT_TARGET_PATH"])
def test_a_path_that_cannot_be_looked_at_is_one_line_naming_its_setting(env, tmp_path, variable):
    """A loop of symbolic links, or a name longer than the file system allows: pathlib raises from
    deep inside; the command says which setting to change, before it lands anything."""
    Path(env["ECOM_RAW_DIR"]).mkdir()
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for path, reason in ((loop / "x" if variable == "DBT_TARGET_PATH" else loop, "Symlink loop"),
                         (tmp_path / ("a" * 300), "File name too long")):
        result = run_ecom("run", env={**env, variable: str(path)}, check=False)
        assert result.returncode == 1, result.stderr
        line = one_error_line(result.stderr)
        assert variable in line and reason in line and "Traceback" not in result.stderr, line
    assert not Path(env["ECOM_CHDB_PATH"]).exists(), "refused before anything landed"


def test_a_bad_target_is_a_clear_error(env):
    env = {**env, "DBT_TARGET": "prod"}
    for args in (("sql", "select 1"), ("load",)):
        result = run_ecom(*args, env=env, check=False)
        assert result.returncode == 1
        assert one_error_line(result.stderr) == "error: DBT_TARGET='prod' is not one of dev, server, cluster"


def test_settings_from_the_environment():
    default = Settings.from_env({})
    assert (default.raw_dir, default.chdb_path) == (Path("data/raw"), Path("data/warehouse"))
    assert default.target == "dev"
    assert default.embedded and default.cluster is None
    assert Settings.from_env({"DBT_TARGET": " "}).target == "dev"
    empty = Settings.from_env({"ECOM_RAW_DIR": "", "ECOM_CHDB_PATH": ""})
    assert (empty.raw_dir, empty.chdb_path) == (Path("data/raw"), Path("data/warehouse")), "set but empty: default"

    server = Settings.from_env({
        "ECOM_RAW_DIR": "/in", "ECOM_CHDB_PATH": "/wh", "DBT_TARGET": "server",
        "CLICKHOUSE_HOST": "ch.example",
        "CLICKHOUSE_PORT": "9440", "CLICKHOUSE_USER": "analyst", "CLICKHOUSE_PASSWORD": "example-password",
        "CLICKHOUSE_SECURE": "True", "CLICKHOUSE_CLUSTER": "ignored-off-cluster",
    })
    assert (server.raw_dir, server.chdb_path, server.host, server.port, server.user) == (
        Path("/in"), Path("/wh"), "ch.example", 9440, "analyst")
    assert server.secure and not server.embedded and server.cluster is None
    assert server.describe() == "ClickHouse https://ch.example:9440"
    assert "example-password" not in repr(server), "the password never shows in logs"
    blank_host = Settings.from_env({"DBT_TARGET": "server", "CLICKHOUSE_HOST": " "})
    assert blank_host.describe() == "ClickHouse http://localhost:8123", "set but empty: the default"

    cluster = Settings.from_env({"DBT_TARGET": "cluster", "CLICKHOUSE_CLUSTER": "analytics"})
    assert cluster.cluster == "analytics"
    assert cluster.describe() == "ClickHouse http://localhost:8123 cluster analytics"
    assert Settings.from_env({"DBT_TARGET": "cluster"}).cluster == "default", "as profiles.yml reads it"
    for spelling, expected in (("1", True), ("yes", True), ("on", True), ("0", False), ("false", False),
                               ("", False)):
        assert Settings.from_env({"CLICKHOUSE_SECURE": spelling}).secure is expected

    with pytest.raises(SettingError, match=r"DBT_TARGET='prod' is not one of dev, server, cluster"):
        Settings.from_env({"DBT_TARGET": "prod"})
    with pytest.raises(SettingError, match=r"CLICKHOUSE_PORT='http' is not a port number"):
        Settings.from_env({"CLICKHOUSE_PORT": "http"})
    for port in ("0", "99999"):
        with pytest.raises(SettingError, match=rf"CLICKHOUSE_PORT='{port}' is not a port number \(1-65535\)"):
            Settings.from_env({"CLICKHOUSE_PORT": port})
    for url in ("http://ch.example:8123/", "ch.example:9440", "ch.example/", "[::1]:8123", "ch.example:",
                "user@ch.example"):
        with pytest.raises(SettingError, match=re.escape(f"CLICKHOUSE_HOST='{url}' is not a host name: give the name")):
            Settings.from_env({"DBT_TARGET": "server", "CLICKHOUSE_HOST": url})
    assert Settings.from_env({"DBT_TARGET": "server", "CLICKHOUSE_HOST": "::1"}).host == "::1", "an IPv6 address"
    assert Settings.from_env({"CLICKHOUSE_HOST": "http://ch.example"}).embedded, "read only off the embedded target"
    # A mistyped flag is refused, not read as off: TLS would be dropped without a word.
    with pytest.raises(SettingError, match=r"CLICKHOUSE_SECURE='ture' is neither on nor off"):
        Settings.from_env({"CLICKHOUSE_SECURE": "ture"})


def test_default_data_paths_are_the_projects_from_any_of_its_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("ECOM_PROJECT_DIR", raising=False)
    project = tmp_path / "project"
    (project / "models" / "gold").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: x\n")
    for folder, prefix in ((project, ""), (project / "models" / "gold", "../../")):
        monkeypatch.chdir(folder)
        settings = Settings.from_env({})
        assert (settings.raw_dir, settings.chdb_path) == (Path(f"{prefix}data/raw"), Path(f"{prefix}data/warehouse"))
        assert settings.chdb_path.resolve() == project / "data" / "warehouse"
        # A relative path from the environment is the project's too, as dbt's plugin reads it.
        assert Settings.from_env({"ECOM_CHDB_PATH": "data/other"}).chdb_path == Path(f"{prefix}data/other")
        assert Settings.from_env({"ECOM_CHDB_PATH": "/abs/wh"}).chdb_path == Path("/abs/wh")
    monkeypatch.chdir(tmp_path)  # outside a project: below the working directory
    assert Settings.from_env({}).raw_dir == Path("data/raw")
    # From a subfolder, ecom reads the project's warehouse and leaves no other behind.
    result = run_ecom("sql", "select * from gold.mart_daily_sales", env={
        k: v for k, v in ecom_env(tmp_path / "r", tmp_path / "w").items()
        if k not in ("ECOM_CHDB_PATH", "ECOM_RAW_DIR", "ECOM_PROJECT_DIR")}, cwd=project / "models", check=False)
    assert str(project / "data" / "warehouse") in one_error_line(result.stderr)
    assert not (project / "models" / "data").exists()


def test_an_unreachable_server_is_one_plain_sentence():
    settings = Settings(target="server", host="127.0.0.1", port=1)
    with pytest.raises(WarehouseUnavailable) as unavailable:
        connect(settings)
    message = str(unavailable.value)
    assert "\n" not in message and "Traceback" not in message
    assert "http://127.0.0.1:1" in message and "CLICKHOUSE_HOST" in message


def test_tls_to_a_port_without_it_is_said_so():
    # Any plain HTTP listener will do: the TLS handshake fails before anything is asked.
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(WarehouseUnavailable) as unavailable:
            connect(Settings(target="server", host="127.0.0.1", port=server.server_port, secure=True))
    finally:
        server.shutdown()
    assert "the port does not speak TLS" in str(unavailable.value), unavailable.value
    assert "CLICKHOUSE_SECURE" in str(unavailable.value)


def test_a_server_that_never_answers_is_given_up_soon(monkeypatch):
    monkeypatch.setattr(warehouse, "HANDSHAKE_SECONDS", 1)
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, answers nothing
    try:
        with pytest.raises(WarehouseUnavailable) as unavailable:
            connect(Settings(target="server", host="127.0.0.1", port=silent.getsockname()[1]))
    finally:
        silent.close()
    assert "no answer within 1 s" in str(unavailable.value), unavailable.value


@pytest.mark.server
@pytest.mark.skipif(not os.environ.get("CLICKHOUSE_HOST"),
                    reason="CLICKHOUSE_HOST not set: server target not tested")
def test_sql_on_the_server_target(env):
    server = {k: v for k, v in os.environ.items() if k.startswith("CLICKHOUSE_")}
    result = run_ecom("sql", "select 1 as x", env={**env, **server, "DBT_TARGET": "server"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "(1 rows)"
