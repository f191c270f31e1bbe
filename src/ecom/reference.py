"""The reference seeds: a daily run loads and tests them only when they changed.

The seven seeds and their tests are about a fifth of a build's nodes, and dbt's cost is per
node. `ecom run` and the Dagster jobs leave them out of their build when the warehouse holds
what the seed files held at the last build that loaded them and passed: the same files and
project settings, and the same rows in every reference table (a table changed behind dbt's back
is loaded again). A full refresh always loads them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from clickhouse_connect.driver.client import Client

# The database `+schema` gives the seeds in dbt_project.yml (generate_schema_name keeps it as is).
DATABASE = "reference"
LOADS = "ecom_state.reference_loads"
# dbt's selection of the seeds and of the tests defined on them in seeds/_seeds.yml.
LEAVE_OUT = ["--exclude", "path:seeds"]


def files_fingerprint(project: Path) -> str:
    """A hash of what decides the seeds' tables: the seed files, their YAML and dbt_project.yml."""
    digest = hashlib.sha256()
    for path in [*sorted((project / "seeds").iterdir()), project / "dbt_project.yml"]:
        if path.is_file():
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def tables_fingerprint(client: Client, project: Path) -> str | None:
    """A hash of every reference table's columns and rows; None when one of them is missing."""
    names = sorted(path.stem for path in (project / "seeds").glob("*.csv"))
    columns = client.query(
        "SELECT table, groupArray((name, type)) FROM (SELECT table, name, type FROM system.columns "
        "WHERE database = {database:String} AND has({names:Array(String)}, table) ORDER BY table, position) "
        "GROUP BY table ORDER BY table", parameters={"database": DATABASE, "names": names}).result_rows
    if [table for table, _ in columns] != names:
        return None
    rows = " UNION ALL ".join(
        f"SELECT '{name}', count(), sum(cityHash64(*)) FROM {DATABASE}.`{name}`" for name in names)
    counts = sorted(client.query(rows).result_rows)
    return hashlib.sha256(repr((columns, counts)).encode()).hexdigest()


def is_current(client: Client, project: Path) -> bool:
    """Whether the warehouse holds the reference tables the seed files make, as last loaded and tested."""
    if not client.command(f"EXISTS TABLE {LOADS}"):
        return False
    last = client.query(f"SELECT files, tables FROM {LOADS} ORDER BY recorded_at DESC LIMIT 1").result_rows
    if not last:
        return False
    files, tables = last[0]
    # The tables are read only when the files match: changed files load the seeds anyway.
    return files == files_fingerprint(project) and tables == tables_fingerprint(client, project)


def record(client: Client, project: Path) -> None:
    """Note the reference tables of a build that loaded the seeds and passed their tests."""
    tables = tables_fingerprint(client, project)
    if tables is None:
        return
    client.command(f"CREATE TABLE IF NOT EXISTS {LOADS} (files String, tables String, "
                   "recorded_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')) ENGINE = MergeTree ORDER BY recorded_at")
    client.command(f"INSERT INTO {LOADS} (files, tables) VALUES ({{files:String}}, {{tables:String}})",
                   parameters={"files": files_fingerprint(project), "tables": tables})
