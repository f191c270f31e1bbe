{#- Incremental models survive a run stopped midway: a kill, or an INSERT that failed after
    some of its parts were written. ClickHouse commits an INSERT part by part, so such a run
    can leave part of its rows, and the `max(_ingested_at)` watermarks would then skip the rest
    for good. Each model records the watermark of its last finished run (post-hook); the next
    run first removes the rows above it, the remains of an unfinished run (pre-hook), and so
    redoes that run’s work in full. A hook with nothing to run renders nothing: dbt sends no
    statement for an empty hook (a placeholder such as `select 1` would cost one per model). -#}

{% macro incremental_state_table() -%}
ecom_state.incremental_watermarks
{%- endmacro %}

{#- ` on cluster "<name>"` on a cluster target. The state tables are read and written on the
    host dbt connects to only, but every node needs them: dbt-clickhouse creates a table model
    without a contract (`reconciliation`, whose SELECT reads the watermarks) as `create table
    ... on cluster ... empty as (<its SQL>)`, which every node analyses. -#}
{% macro ecom_state_on_cluster() -%}
    {%- set cluster = adapter.get_clickhouse_cluster_name() if target.get('cluster') else none -%}
    {{- ' on cluster ' ~ cluster if cluster else '' -}}
{%- endmacro %}

{#- The watermark of the last finished run of the model whose table is `relation` (this model’s
    by default), as a scalar subquery (1970-01-01 before its first one: argMax over no rows gives
    the type's default, not NULL): rows above it are the remains of a run that did not finish. -#}
{% macro finished_watermark(relation=none) -%}
{%- set relation = relation if relation is not none else this -%}
(select argMax(watermark, recorded_at) from {{ incremental_state_table() }}
 where model = '{{ relation.schema ~ "." ~ relation.identifier }}')
{%- endmacro %}

{#- `max(_ingested_at)` of an incremental model’s table, as a scalar subquery, reading only the
    granules at or above the watermark of the model’s last finished run (the tables’ minmax
    index on `_ingested_at`): a daily run reads the rows of the last runs, not the history.
    Exact in every case: when a row is at or above that watermark, the newest row is among
    them; when none is (no finished run yet, or rows removed since), every row is read. -#}
{% macro newest_ingested_at(relation) -%}
{%- set floor = "ifNull(" ~ finished_watermark(relation) ~ ", toDateTime64(0, 3, 'UTC'))" -%}
(select max(_ingested_at) from {{ relation }}
 where _ingested_at >= (
     select if(count() > 0, {{ floor }}, toDateTime64(0, 3, 'UTC'))
     from {{ relation }} where _ingested_at >= {{ floor }}
 ))
{%- endmacro %}

{#- on-run-start: a warehouse of a version of the project from before the state table stops; the
    state table; the tables of incremental models built by an earlier version of the project (no
    watermark column yet, or row fingerprints of another kind); and on the
    embedded target (one process at a time) the work tables of runs that were stopped: a
    delete+insert model’s `<model>__dbt_new_data_<invocation>`, a table model’s
    `<model>__dbt_tmp` and `<model>__dbt_backup`. Nothing else can be using them there, and
    the models they belong to are rebuilt from their inputs. -#}
{% macro create_incremental_state() -%}
    {%- if execute -%}
        {#- Said once before the errors of every model that reads it. -#}
        {%- if run_query("select count() from system.databases where name = 'bronze'").columns[0].values()[0] == 0 -%}
            {%- do exceptions.warn("bronze is not loaded on this target (no database bronze): land the raw files "
                                   ~ "first with `ecom load` (or `ecom run`, `make demo`); until then every model "
                                   ~ "that reads it fails") -%}
        {%- endif -%}
        {#- A warehouse with tables of incremental models but no record of any run was built by a
            version of the project from before it kept them: every incremental model would take
            its table for an unfinished first build and empty it, and the tables whose columns
            changed since would stop the build. It stops here instead, whole. -#}
        {%- if not flags.FULL_REFRESH
               and run_query("select count() from system.databases where name = 'ecom_state'").columns[0].values()[0] == 0 -%}
            {%- set built = [] -%}
            {%- for node in graph.nodes.values() -%}
                {%- if node.resource_type == 'model' and node.config.materialized == 'incremental' -%}
                    {%- do built.append("('" ~ node.schema ~ "', '" ~ node.alias ~ "')") -%}
                {%- endif -%}
            {%- endfor -%}
            {%- set earlier = run_query("select database || '.' || name from system.tables where (database, name) in ("
                                        ~ (built or ["('', '')"]) | join(', ') ~ ") order by 1").rows -%}
            {%- if earlier | length > 0 -%}
                {%- set named = earlier | map(attribute=0) | list -%}
                {{ exceptions.raise_compiler_error(named[:3] | join(', ')
                   ~ (" and " ~ (named | length - 3) ~ " more tables" if named | length > 3 else "") ~ " were built by an earlier "
                   ~ "version of the project, which kept no record of its runs: build the warehouse anew once, with "
                   ~ "`ecom run --full-refresh` or `dbt build --full-refresh`") }}
            {%- endif -%}
        {%- endif -%}
        {%- do run_query("create database if not exists ecom_state" ~ ecom_state_on_cluster()) -%}
        {%- do run_query("create table if not exists " ~ incremental_state_table() ~ ecom_state_on_cluster()
                         ~ " (model String, "
                         ~ "watermark DateTime64(3, 'UTC'), recorded_at DateTime64(3, 'UTC') default now64(3, 'UTC')) "
                         ~ "engine = MergeTree order by (model, recorded_at)") -%}
        {%- do create_test_passes() -%}
        {%- set incremental, versions = [], [] -%}
        {%- for node in graph.nodes.values() -%}
            {%- if node.resource_type == 'model' and node.config.materialized == 'incremental' -%}
                {%- do incremental.append("('" ~ node.schema ~ "', '" ~ node.alias ~ "')") -%}
                {%- if node.name.endswith('_versions') -%}
                    {%- do versions.append("('" ~ node.schema ~ "', '" ~ node.alias ~ "')") -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
        {#- Versions tables built by earlier rules of silver (silver_rules): their verdicts decide
            what every later table holds, and no incremental run revisits them.
            Every run but a full refresh stops until they are built anew, before anything is
            dropped or built: a warehouse of an earlier version of the project whose tables would
            also be rebuilt below stops here, whole. A table with no comment and no finished run is
            a first build that was stopped before its post-hook: the run redoes it
            (rollback_unfinished_run). -#}
        {%- if versions and not flags.FULL_REFRESH -%}
            {%- set earlier_rule = run_query("select database || '.' || name as qualified_name from system.tables "
                                             ~ "where (database, name) in (" ~ versions | join(', ') ~ ") "
                                             ~ "and comment != '" ~ silver_rules() ~ "' and (comment != '' "
                                             ~ "or qualified_name in (select model from " ~ incremental_state_table() ~ ")) "
                                             ~ "order by qualified_name").rows -%}
            {%- if earlier_rule | length > 0 -%}
                {{ exceptions.raise_compiler_error(earlier_rule | map(attribute=0) | join(', ') ~ " were built by earlier "
                   ~ "rules of silver (this version judges some rows otherwise: '" ~ silver_rules() ~ "'), and every "
                   ~ "silver and gold table follows their verdicts: build the warehouse anew once, with "
                   ~ "`ecom run --full-refresh` or `dbt build --full-refresh`") }}
            {%- endif -%}
        {%- endif -%}
        {#- A table an incremental model had under an earlier materialization, without the
            `_ingested_at` watermark column, or a versions table whose `_row_hash` is not the
            UInt128 of the row_hash macro: dropped, with the records of its finished runs, so
            this run builds it anew. -#}
        {%- if incremental -%}
            {%- set outdated = run_query("select database, name from system.tables where (database, name) in ("
                                         ~ incremental | join(', ') ~ ") and ((database, name) not in "
                                         ~ "(select database, table from system.columns where name = '_ingested_at') "
                                         ~ "or (database, name) in (select database, table from system.columns "
                                         ~ "where name = '_row_hash' and type != 'UInt128'))") -%}
            {%- for row in outdated.rows -%}
                {{ log("dropping " ~ row[0] ~ "." ~ row[1] ~ ": built by an earlier version of the model, "
                       ~ "rebuilt in this run", info=true) }}
                {#- From the adapter, which knows whether the table is ON CLUSTER (a cluster target). -#}
                {%- do adapter.drop_relation(adapter.get_relation(database='', schema=row[0], identifier=row[1])) -%}
                {%- do run_query("delete from " ~ incremental_state_table() ~ " where model = '" ~ row[0] ~ "."
                                 ~ row[1] ~ "' settings lightweight_deletes_sync = 2, mutations_sync = 2") -%}
            {%- endfor -%}
        {%- endif -%}
        {%- if target.type == 'chdb' -%}
            {%- set stale = run_query("select database, name from system.tables where database in ('silver', 'gold') "
                                      ~ "and match(name, '__dbt_(new_data_|distributed_new_data|tmp$|backup$)')") -%}
            {%- for row in stale.rows -%}
                {%- do run_query("drop table if exists `" ~ row[0] ~ "`.`" ~ row[1] ~ "`") -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- pre-hook: an incremental model that has rows above the watermark of its last finished run
    (or no finished run at all) drops them, so this run redoes the unfinished one in full; and
    it refuses to build from inputs behind the newest landing (refuse_stale_inputs). -#}
{% macro rollback_unfinished_run() -%}
    {#- A table that copies rows of its last build (mart_data_quality) takes its inputs as done too. -#}
    {%- if execute and model.config.get('meta', {}).get('copies_its_last_build') and not should_full_refresh()
           and load_relation(this) is not none -%}
        {%- do refuse_stale_inputs() -%}
    {%- endif -%}
    {%- if execute and model.config.materialized == 'incremental' and not should_full_refresh() -%}
        {%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) -%}
        {%- if existing is not none -%}
            {%- do refuse_stale_inputs() -%}
            {%- set name = this.schema ~ '.' ~ this.identifier -%}
            {#- Whether a run finished, and the watermark of the last one, in one read. -#}
            {%- set last_run = run_query("select count(), toString(argMax(watermark, recorded_at)) from "
                                         ~ incremental_state_table() ~ " where model = '" ~ name ~ "'").rows[0] -%}
            {%- if last_run[0] == 0 -%}
                {%- do run_query("truncate table " ~ this) -%}
                {#- The table keeps its UUID but may number its blocks from 1 again. -#}
                {%- do run_query("delete from " ~ test_passes_table() ~ " where relation_uuid = "
                                 ~ relation_uuid(this) ~ " settings lightweight_deletes_sync = 2, mutations_sync = 2") -%}
            {%- else -%}
                {#- The watermark as a literal: on a cluster each replica runs a mutation’s
                    subqueries itself, and `ecom_state` is on one host. -#}
                {%- set above = "_ingested_at > toDateTime64('" ~ last_run[1] ~ "', 3, 'UTC')" -%}
                {%- set left_over = run_query("select count() from " ~ this ~ " where " ~ above).rows[0][0] -%}
                {%- if left_over > 0 -%}
                    {{ log("removing " ~ left_over ~ " rows of an unfinished run from " ~ name, info=true) }}
                    {%- do run_query("delete from " ~ this ~ " where " ~ above
                                     ~ " settings lightweight_deletes_sync = 2, mutations_sync = 2") -%}
                {%- endif -%}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- post-hook: the watermark of the run that just finished; a table model records when it was
    built (no watermark), for refuse_stale_inputs. -#}
{% macro record_finished_run() -%}
    {%- if model.config.materialized == 'incremental' -%}
        insert into {{ incremental_state_table() }} (model, watermark)
        select '{{ this.schema ~ "." ~ this.identifier }}', {{ newest_ingested_at(this) }}
    {%- elif model.config.materialized == 'table' -%}
        insert into {{ incremental_state_table() }} (model, watermark)
        select '{{ this.schema ~ "." ~ this.identifier }}', toDateTime64(0, 3, 'UTC')
    {%- endif -%}
{%- endmacro %}

{#- An incremental run takes what its inputs hold as done: its watermark passes their rows for
    good. Built from an input that is behind the newest landing (a selection that leaves out a
    model above it, after new files landed: `dbt build -s fct_orders+` before silver is built),
    it would skip rows that input gets later. So the run stops, naming the models to build
    first, when a model above it (views looked through, seeds aside) was not built since the
    newest landing in bronze (one that reads bronze) or since a model it reads was. A plain
    `dbt build`, and `ecom run`, build every one of them first. -#}
{% macro refuse_stale_inputs(node=model) -%}
    {%- set parents, queue = {}, [node.unique_id] -%}
    {%- for unique_id in queue -%}
        {%- set current = graph.nodes[unique_id] -%}
        {%- set found = [] -%}
        {%- for parent_id in current.depends_on.nodes -%}
            {%- set parent = graph.nodes.get(parent_id) -%}
            {%- if parent_id.startswith('source.') -%}
                {%- do found.append('bronze') -%}
            {%- elif parent is not none and parent.resource_type == 'model' -%}
                {%- do found.append(parent_id) -%}
                {%- if parent_id not in queue -%}{%- do queue.append(parent_id) -%}{%- endif -%}
            {%- endif -%}
        {%- endfor -%}
        {%- do parents.update({unique_id: found}) -%}
    {%- endfor -%}
    {#- The models each model reads, views replaced by what they read. -#}
    {%- set built_from = {} -%}
    {%- for unique_id in queue -%}
        {%- set direct, seen = [], [] -%}
        {%- set pending = parents[unique_id] | list -%}
        {%- for parent_id in pending -%}
            {%- if parent_id == 'bronze' or graph.nodes[parent_id].config.materialized != 'view' -%}
                {%- if parent_id not in direct -%}{%- do direct.append(parent_id) -%}{%- endif -%}
            {%- elif parent_id not in seen -%}
                {%- do seen.append(parent_id) -%}
                {%- do pending.extend(parents[parent_id]) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- do built_from.update({unique_id: direct}) -%}
    {%- endfor -%}
    {%- set names = {} -%}
    {%- for unique_id in queue if unique_id != node.unique_id
                               and graph.nodes[unique_id].config.materialized != 'view' -%}
        {%- set other = graph.nodes[unique_id] -%}
        {%- do names.update({unique_id: other.schema ~ '.' ~ (other.alias or other.name)}) -%}
    {%- endfor -%}
    {%- if names -%}
        {%- set built = {} -%}
        {%- for row in run_query("select model, toString(max(recorded_at)) from " ~ incremental_state_table()
                                 ~ " where model in ('" ~ names.values() | join("', '") ~ "') group by model "
                                 ~ "union all select 'bronze', toString(max(finished_at)) from "
                                 ~ source('bronze', 'ingest_log') ~ " where status = 'landed'").rows -%}
            {%- do built.update({row[0]: row[1]}) -%}
        {%- endfor -%}
        {%- set behind = [] -%}
        {%- for unique_id, name in names.items() -%}
            {%- set since = [] -%}
            {%- for parent_id in built_from[unique_id] -%}
                {%- set parent = 'bronze' if parent_id == 'bronze' else names[parent_id] -%}
                {%- if built.get(name) is not none and built.get(parent) is not none
                       and built.get(name) < built.get(parent) -%}
                    {%- do since.append('the newest landing' if parent == 'bronze' else parent) -%}
                {%- endif -%}
            {%- endfor -%}
            {%- if built.get(name) is none -%}
                {%- do behind.append(name ~ ' (no build recorded)') -%}
            {%- elif since -%}
                {%- do behind.append(name ~ ' (not built since ' ~ since | join(', ') ~ ')') -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if behind -%}
            {{ exceptions.raise_compiler_error(this.schema ~ "." ~ this.identifier ~ " builds on its last run, and "
               ~ "from inputs behind the newest landing it would pass for good the rows they get later: "
               ~ behind | join('; ') ~ ". Build them first: `dbt build -s +" ~ node.name ~ "`, or `dbt build`") }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
