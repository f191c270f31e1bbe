"""Every dbt model, seed and source as a Dagster asset, and dbt tests as asset checks.

The translator names assets after their layer (`silver/orders`, `gold/mart_daily_sales`,
`reference/<seed>`), groups them by layer (bronze, silver, gold, reference) and maps each
source `bronze.<table>` to the landing asset of that table, so lineage runs from the raw
exports through the loader into dbt. Descriptions and column schemas come from the dbt docs;
each test's check says what it checks (`dbt_test_description`).

A partition run is a plain `dbt build` (without the unit tests): the models are incremental on
new bronze batches, so after a day has landed the build is that day's increment. dbt tests of
severity error are blocking checks, and `dbt build` itself skips every model downstream of a
failing one, so bad data does not reach gold. As in `ecom run`, a run that builds models leaves
the seeds and their tests out while the reference tables hold what the seed files held at their
last load that passed (`ecom.reference`): their assets are materialized with `reloaded: false`
and their checks are not evaluated again. A run of the reference assets alone loads them.

On `dev` the row counts are read after dbt has exited: chDB admits one process per data
directory, and dbt's subprocess holds it while it runs.
"""

import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliInvocation,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from ecom import reference
from ecom.lock import ensure_unlocked
from orchestration.assets_ingest import landing_key
from orchestration.partitions import BACKFILL_POLICY
from orchestration.resources import Warehouse, pinned_warehouse_env, unavailable_as_failure

LAYERS = ("bronze", "silver", "gold")

# dbt unit tests check the SQL, not the day's data: they run in CI and in `dbt build`, and would
# only slow every partition down (dbt's own advice is to leave them out of production builds).
# Without colours: dbt's log lines become the step's error text, shown in the UI and the alerts.
BUILD = ["build", "--exclude-resource-type", "unit_test", "--no-use-colors"]


def _layer(props: Mapping[str, Any]) -> str | None:
    """bronze, silver or gold from the model's folder (`models/<layer>/...`)."""
    fqn = props.get("fqn") or []
    return fqn[1] if len(fqn) > 2 and fqn[1] in LAYERS else None


class EcomTranslator(DagsterDbtTranslator):
    """Keys and groups by layer; dbt sources `bronze.<table>` are the landing assets."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        kind, name = dbt_resource_props["resource_type"], dbt_resource_props["name"]
        if kind == "source" and dbt_resource_props.get("source_name") == "bronze":
            return landing_key(name)
        if kind == "seed":
            return dg.AssetKey(["reference", name])
        layer = _layer(dbt_resource_props)
        if kind == "model" and layer:
            return dg.AssetKey([layer, name])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        kind = dbt_resource_props["resource_type"]
        if kind == "source":
            return "bronze"
        if kind == "seed":
            return "reference"
        return _layer(dbt_resource_props) or "dbt"

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        """dagster-dbt's description (the dbt docs, then the SQL under "Raw SQL"), without that
        heading for what has no SQL (seeds), whose page would otherwise end in an empty block."""
        if (dbt_resource_props.get("raw_code") or "").strip():
            return super().get_description(dbt_resource_props)
        return dbt_resource_props.get("description") or \
            f"dbt {dbt_resource_props['resource_type']} {dbt_resource_props['name']}"

    def get_asset_check_spec(self, asset_spec: dg.AssetSpec, manifest: Mapping[str, Any], unique_id: str,
                             project: DbtProject | None) -> dg.AssetCheckSpec | None:
        """dagster-dbt describes a check only from the test's `meta.description`; else from `dbt_test_description`."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return spec._replace(description=dbt_test_description(manifest["nodes"][unique_id]))


def _relation(reference: str) -> str:
    """`dim_date` from "ref('dim_date')", `bronze.ingest_log` from "source('bronze', 'ingest_log')"."""
    return ".".join(re.findall(r"'([^']*)'", reference)) or reference


def _bounds(args: Mapping[str, Any]) -> str:
    inclusive = args.get("inclusive", True)
    parts = [f"{'>=' if inclusive else '>'} {args['min_value']}" if "min_value" in args else "",
             f"{'<=' if inclusive else '<'} {args['max_value']}" if "max_value" in args else ""]
    if not any(parts):
        raise KeyError("min_value")
    return " and ".join(part for part in parts if part)


def _relationship(column: str, args: Mapping[str, Any]) -> str:
    return f"every `{column}` is found in `{args['field']}` of {_relation(args['to'])}"


# What the generic tests of the project (dbt's own and those of macros/tests) check, as a sentence.
GENERIC_TESTS = {
    "not_null": lambda column, args: f"`{column}` is never null",
    "not_blank": lambda column, args: f"`{column}` is never null, empty or only spaces",
    "lineage_columns_not_nullable": lambda column, args: (
        f"the lineage columns ({', '.join(args['columns']) if args.get('columns') else 'those starting with _'}) "
        "are there and not Nullable"),
    "unique": lambda column, args: f"`{column}` is unique",
    "accepted_values": lambda column, args: f"`{column}` is one of {', '.join(map(str, args['values']))}",
    "accepted_range": lambda column, args: f"`{column}` is {_bounds(args)}",
    "relationships": _relationship,
    "relationships_present": _relationship,
    "unique_combination_of_columns": lambda column, args: (
        f"one row per {', '.join(f'`{c}`' for c in args['combination_of_columns'])}"),
    "expression_is_true": lambda column, args: f"`{' '.join(args['expression'].split())}` holds on every row",
    "reconciles": lambda column, args: (
        f"`{args['left_expression']}` = `{args['right_expression']}`"
        + (f" per {', '.join(args['group_by'])}" if args.get("group_by") else "")),
}


def dbt_test_description(test: Mapping[str, Any]) -> str:
    """What a dbt data test checks: its `description` in yml, else the first paragraph of the
    comment heading a singular test's SQL, else a sentence from the generic test's arguments."""
    if (test.get("description") or "").strip():
        return test["description"].strip()
    generic = test.get("test_metadata")
    if not generic:
        comment = re.match(r"\s*\{#-?(.*?)-?#\}", test.get("raw_code") or "", re.DOTALL)
        first = comment.group(1).strip().split("\n\n")[0] if comment else ""
        return " ".join(first.split()) or f"dbt singular test `{test.get('original_file_path') or test['name']}`"
    args = {key: value for key, value in generic.get("kwargs", {}).items() if key != "model"}
    column = args.pop("column_name", None) or test.get("column_name")
    try:
        sentence = GENERIC_TESTS[generic["name"]](column, args)
        text = sentence[0].upper() + sentence[1:]
    except (KeyError, TypeError):  # a test of another package, or arguments written another way
        shown = ", ".join(f"{key}: {value}" for key, value in args.items())
        text = (f"dbt test `{generic['name']}`" + (f" on `{column}`" if column else "")
                + (f" ({shown})" if shown else ""))
    where = (test.get("config") or {}).get("where")
    return text + (f" (where {' '.join(where.split())})" if where else "") + "."


def translator() -> EcomTranslator:
    """dbt tests become asset checks, source tests included (on the landing assets)."""
    return EcomTranslator(settings=DagsterDbtTranslatorSettings(
        enable_asset_checks=True, enable_source_tests_as_checks=True,
    ))


def with_source_tests_attached(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """The manifest, with each generic test defined on a source attached to that source.

    dbt fills a test's `attached_node` only when it is defined on a model, seed or snapshot;
    dagster-dbt then finds the asset of a test from its one parent, so a source test with two
    (the bronze `_batch_id` tests, against the ingest log) became no check at all, only an
    observation and a warning on every run. Attached, each is a check of its landing asset."""
    sources = manifest.get("sources", {})
    nodes = dict(manifest.get("nodes", {}))
    for unique_id, props in nodes.items():
        generic = props.get("test_metadata") or {}
        if props.get("resource_type") != "test" or props.get("attached_node") or not generic:
            continue
        model = str(generic.get("kwargs", {}).get("model", ""))
        tested = re.search(r"source\(\s*'([^']+)'\s*,\s*'([^']+)'\s*\)", model)
        source_id = tested and f"source.{props['package_name']}.{tested[1]}.{tested[2]}"
        if source_id in sources:
            nodes[unique_id] = {**props, "attached_node": source_id}
    return {**manifest, "nodes": nodes}


def counted_relations(manifest: Mapping[str, Any], translate: DagsterDbtTranslator) -> dict[dg.AssetKey, str]:
    """Asset key -> relation of every model or seed stored as a table (views are not counted)."""
    relations = {}
    for props in manifest.get("nodes", {}).values():
        if props["resource_type"] not in ("model", "seed") or not props.get("relation_name"):
            continue
        if props.get("config", {}).get("materialized") in ("view", "ephemeral"):
            continue
        relations[translate.get_asset_key(props)] = props["relation_name"]
    return relations


def _with_row_counts(context: dg.AssetExecutionContext, events: list,
                     counts: Mapping[dg.AssetKey, int]) -> Iterator:
    for event in events:
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            if key in counts:
                event = event.with_metadata({**event.metadata, "dagster/row_count": counts[key]})
        yield event


def seed_keys(manifest: Mapping[str, Any], translate: DagsterDbtTranslator) -> set[dg.AssetKey]:
    """The asset keys of the dbt seeds (the reference tables)."""
    return {translate.get_asset_key(props) for props in manifest.get("nodes", {}).values()
            if props["resource_type"] == "seed"}


def _unchanged_seeds(context: dg.AssetExecutionContext, keys: set[dg.AssetKey]) -> list[dg.Output]:
    """The selected seeds' outputs for a build that left them out, the tables being current."""
    return [dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_key(key), metadata={
        "reloaded": False,
        "why": "the reference table holds what the seed file held at its last load whose tests passed: "
               "left out of this dbt build with its tests",
    }) for key in sorted(keys)]


def _record_seeds(context: dg.AssetExecutionContext, client: Client, project_dir: Path) -> None:
    """Note a build that loaded the seeds and passed, so that the next runs leave them out."""
    try:
        reference.record(client, project_dir)
    except ClickHouseError as exc:
        context.log.warning(f"the seeds were loaded, but noting so failed ({' '.join(str(exc).split())[:200]}); "
                            "the next run loads them again")


def _reloads_seeds(context: dg.AssetExecutionContext, warehouse: Warehouse, project_dir: Path,
                   selected_seeds: set[dg.AssetKey]) -> bool:
    """Whether the build loads the selected seeds: a run of nothing but seeds always does, one that
    also builds models only when the reference tables are not current (`ecom.reference`)."""
    if not selected_seeds or not context.selected_asset_keys - selected_seeds:
        return True
    with warehouse.client() as client:
        return not reference.is_current(client, project_dir)


def _after_build(context: dg.AssetExecutionContext, warehouse: Warehouse, project_dir: Path,
                 selected_seeds: set[dg.AssetKey], reloaded: bool, passed: bool,
                 relations: Mapping[dg.AssetKey, str], events: list) -> list:
    """The outputs of the seeds a build left out (first: Dagster takes a multi-asset's outputs in
    the order of the graph), then the build's events, with their tables' row counts; and the note
    of a build that loaded the seeds and passed."""
    if selected_seeds and not reloaded:
        events = _unchanged_seeds(context, selected_seeds) + events
    counted = {context.asset_key_for_output(e.output_name) for e in events
               if isinstance(e, dg.Output) and "dagster/row_count" not in e.metadata} & relations.keys()
    record = bool(selected_seeds) and reloaded and passed
    if not counted and not record:
        return events
    with warehouse.client() as client:
        counts = {key: int(client.command(f"SELECT count() FROM {relations[key]}")) for key in sorted(counted)}
        if record:
            _record_seeds(context, client, project_dir)
    return list(_with_row_counts(context, events, counts))


def build_dbt_assets(project: DbtProject, manifest: Mapping[str, Any],
                     partitions_def: dg.PartitionsDefinition, pool: str | None) -> dg.AssetsDefinition:
    translate = translator()
    relations = counted_relations(manifest, translate)
    seeds = seed_keys(manifest, translate)
    manifest = with_source_tests_attached(manifest)

    @dbt_assets(
        manifest=manifest,
        project=project,
        dagster_dbt_translator=translate,
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        pool=pool,
    )
    def ecom_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        settings = warehouse.settings
        project_dir = Path(project.project_dir)
        prune_run_folders(project_dir / project.target_path, context.op_execution_context.op.name)
        selected_seeds = context.selected_asset_keys & seeds
        if not settings.embedded:
            reload = _reloads_seeds(context, warehouse, project_dir, selected_seeds)
            # The seeds left out, before dbt's outputs; a load is recorded once dbt has passed, below.
            yield from _after_build(context, warehouse, project_dir, selected_seeds, reload, passed=False,
                                    relations=relations, events=[])
            invocation = dbt.cli(BUILD + ([] if reload else reference.LEAVE_OUT), context=context)
            try:
                yield from invocation.stream().fetch_row_counts()
            except DagsterDbtCliRuntimeError as exc:
                raise dbt_failure(exc, invocation) from None
            if selected_seeds and reload:
                with warehouse.client() as client:
                    _record_seeds(context, client, project_dir)
            return
        events, failure = [], None
        with warehouse.exclusive():
            reload = _reloads_seeds(context, warehouse, project_dir, selected_seeds)
            # A process that opened the directory before the lock was taken lets go, then dbt has it.
            with unavailable_as_failure():
                ensure_unlocked(settings.chdb_path.resolve(), warehouse.wait_seconds)
            with pinned_warehouse_env(settings, warehouse.wait_seconds):
                invocation = dbt.cli(BUILD + ([] if reload else reference.LEAVE_OUT), context=context)
            try:
                events.extend(invocation.stream())
            except DagsterDbtCliRuntimeError as exc:
                failure = exc
            # The row counts are read after dbt has exited.
            events = _after_build(context, warehouse, project_dir, selected_seeds, reload, passed=failure is None,
                                  relations=relations, events=events)
        yield from events
        if failure is not None:
            raise dbt_failure(failure, invocation) from None

    return ecom_dbt


def shortened(text: str, limit: int = 300) -> str:
    """`text` in `limit` characters at most: its start, which says what failed, and its end, which
    often says what to do ("Build them first: ..."), with the middle left out."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]} … {text[-(limit - head - 3):]}"


def dbt_failure(error: DagsterDbtCliRuntimeError, invocation: DbtCliInvocation, shown: int = 3) -> dg.Failure:
    """The step's failure with dbt's failed nodes and their errors in its first line, which the
    run's page and the failure alerts show; dagster-dbt's own message ("The dbt CLI process with
    command", then the command and the errors of dbt's log) follows it."""
    try:
        results = invocation.get_artifact("run_results.json").get("results", [])
    except (OSError, ValueError):  # dbt stopped before it wrote its results (a project that does not parse)
        results = []
    failed = [r for r in results if r.get("status") in ("error", "fail", "runtime error")]
    nodes = []
    for result in failed[:shown]:
        kind, _, name = result["unique_id"].split(".", 2)
        lines = [line.strip() for line in (result.get("message") or "").splitlines() if line.strip()]
        if len(lines) > 1 and lines[0].startswith(("Database Error in", "Runtime Error in", "Compilation Error in")):
            lines = lines[1:]  # "Database Error in model <name> (<path>)": the node is named already
        nodes.append(f"{kind} {name} ({result['status']}): {shortened(' '.join(lines))}")
    more = f"; {len(failed) - shown} more" if len(failed) > shown else ""
    first = f"dbt build failed: {'; '.join(nodes)}{more}" if nodes else "dbt build failed"
    return dg.Failure(description=f"{first}\n\n{error}")


# dagster-dbt gives every invocation a target folder of its own (`<op>-<run>-<id>`, about 10 MB
# of compiled SQL and artifacts): the newest are kept to read a recent run's SQL and results,
# and none younger than a day (a run still going on a server target, beside others).
KEPT_RUN_FOLDERS = 10
KEPT_RUN_FOLDER_SECONDS = 86_400


def prune_run_folders(target_path: Path, op_name: str, keep: int = KEPT_RUN_FOLDERS) -> None:
    """Before a run adds its own folder, remove the op's oldest run folders beyond the `keep - 1`
    newest (`keep` with the new one), only those untouched for a day: a run still going keeps
    its folder."""
    folders = []
    for path in target_path.glob(f"{op_name}-*"):
        try:
            if path.is_dir():
                folders.append((path.stat().st_mtime, path))
        except OSError:  # removed meanwhile by another run
            continue
    folders.sort()
    cutoff = time.time() - KEPT_RUN_FOLDER_SECONDS
    for mtime, folder in folders[:max(len(folders) - keep + 1, 0)]:
        if mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


RECONCILIATION = dg.AssetKey(["silver", "reconciliation"])
DASHBOARD_EXPOSURE = "sales_dashboard"


def exposure(manifest: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The dbt exposure `name` of the manifest."""
    for props in manifest.get("exposures", {}).values():
        if props["name"] == name:
            return props
    raise dg.DagsterInvalidDefinitionError(
        f"the dbt project has no exposure {name!r}: the dashboard asset reads its upstream models from "
        "it (models/exposures.yml)")


def dashboard_inputs(manifest: Mapping[str, Any], dbt_assets_def: dg.AssetsDefinition) -> list[dg.AssetKey]:
    """What the dashboard reads, as the dbt exposure `sales_dashboard` lists it (the test suite
    checks that list against the report's queries), and silver.reconciliation: not read, but its
    blocking check keeps unbalanced figures off the dashboard, and Dagster blocks only the direct
    children of a checked asset."""
    translate = translator()
    nodes = {**manifest.get("nodes", {}), **manifest.get("sources", {})}
    read = sorted({translate.get_asset_key(nodes[unique_id])
                   for unique_id in exposure(manifest, DASHBOARD_EXPOSURE)["depends_on"]["nodes"]})
    return read + ([RECONCILIATION] if RECONCILIATION in dbt_assets_def.keys else [])


def dashboard_owners(manifest: Mapping[str, Any]) -> list[str]:
    """The owner of the exposure `sales_dashboard` (its email, else `team:<name>`), who owns the page."""
    owner = exposure(manifest, DASHBOARD_EXPOSURE).get("owner") or {}
    email, name = owner.get("email"), owner.get("name")
    if email:
        return [email] if isinstance(email, str) else list(email)
    return [f"team:{name}"] if name else []
