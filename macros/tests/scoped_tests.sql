{#- Key tests that read the keys written since they last passed (issue: daily runs read new
    data, not history).

    A uniqueness test (unique, unique_combination_of_columns) groups every key of its table, so
    its cost grows with history. On a delete+insert model that keeps the engine’s block number
    column, and on a source table whose meta says it keeps one (`block_number_column`: bronze,
    whose tables the loader makes with the setting), it reads only the keys of the rows written
    since the test last passed there, and every row that holds one of them (the first key
    column’s values), so a new row repeating an old key still fails. `_block_number` is the
    number of the INSERT that wrote a row, kept through merges, and every INSERT gets a higher
    one, so a row rewritten with old values (a customer’s closed version, an order recomputed
    for a new customer version) or inserted behind dbt’s back counts as new. A row changed in
    place (ALTER TABLE ... UPDATE, or a lightweight UPDATE) keeps its block number: a key made a
    duplicate that way is not seen until the table is read whole (a full refresh, or the test
    edited). The engine refuses to update a column of the sorting key, so of the scoped keys
    only `dim_customers.customer_key` can change so. Every other test
    reads the whole relation: tests that check rows one by one read a narrow column or two,
    which costs little (scoped, they cost more: every row’s block number is read too),
    relationships can break when a parent loses a key, and the singular tests compare whole
    tables.

    Each run of a scoped test first records a 'pending' row in `test_passes_table()`: the
    table’s highest block number before the test reads it, and a hash of the test’s compiled
    SQL. At the end of the run (on-run-end), the tests that found no failing row record their
    pending row as 'passed'. The next run reads above the last pass of the same SQL on the same
    table (its UUID): a new or edited test, test macro or scope, a full refresh or a rebuilt
    table reads every key, and a failing test keeps failing until the rows are fixed.

    Only on the embedded target, whose databases are Atomic (a rebuilt table gets a new UUID).
    A server or cluster target keeps whole-table tests: a cluster’s block numbers count per
    partition, and a server’s database may give every table the same UUID. -#}

{% macro test_passes_table() -%}
ecom_state.test_passes
{%- endmacro %}

{#- on-run-start, beside the incremental state: one row per scoped test run ('pending', with
    the mark captured before the test) and per pass ('passed', written at the end of the run
    for the tests that found no failing row). -#}
{% macro create_test_passes() -%}
    {%- do run_query("create table if not exists " ~ test_passes_table() ~ ecom_state_on_cluster()
                     ~ " (test String, relation_uuid String, "
                     ~ "code_hash String, watermark Int64, status LowCardinality(String), invocation_id String, "
                     ~ "recorded_at DateTime64(6, 'UTC') default now64(6, 'UTC')) "
                     ~ "engine = MergeTree order by (test, relation_uuid, recorded_at)") -%}
{%- endmacro %}

{#- The generic tests that are scoped. -#}
{% macro scoped_test_kinds() -%}
    {{ return(['unique', 'unique_combination_of_columns']) }}
{%- endmacro %}

{#- How the test being compiled or run is scoped: none, or the first of its key columns and the
    tested relation. -#}
{% macro test_scope() -%}
    {#- `--empty` reads every relation as an empty subquery, without the part and block columns. -#}
    {%- if not execute or flags.EMPTY or model.resource_type != 'test' or not model.test_metadata
           or model.test_metadata.name not in scoped_test_kinds()
           or model.depends_on.nodes | length != 1
           or target.type != 'chdb' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set parent = model.depends_on.nodes[0] -%}
    {%- set node = graph.sources.get(parent) if parent.startswith('source.') else graph.nodes.get(parent) -%}
    {%- if node is none -%}
        {{ return(none) }}
    {%- elif node.resource_type == 'source' -%}
        {%- if not node.meta.get('block_number_column') -%}
            {{ return(none) }}
        {%- endif -%}
    {%- elif node.resource_type != 'model' or node.config.materialized != 'incremental'
             or node.config.incremental_strategy != 'delete_insert'
             or not (node.config.get('settings') or {}).get('enable_block_number_column') -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set kwargs = model.test_metadata.kwargs -%}
    {%- set keys = kwargs.combination_of_columns if model.test_metadata.name == 'unique_combination_of_columns'
                   else [kwargs.column_name] -%}
    {{ return({'key': keys[0],
               'relation': api.Relation.create(database=node.database, schema=node.schema,
                                               identifier=node.identifier if node.resource_type == 'source'
                                               else node.alias)}) }}
{%- endmacro %}

{% macro relation_uuid(relation) -%}
(select toString(uuid) from system.tables where database = '{{ relation.schema }}' and name = '{{ relation.identifier }}')
{%- endmacro %}

{#- The mark of the test’s last pass on this table with the same compiled SQL (the hash of
    this run’s pending row), as a scalar subquery; -1, every row, when there is none. -#}
{% macro last_test_pass(scope) -%}
(select if(countIf(same_test) > 0, argMaxIf(watermark, recorded_at, same_test), -1)
 from (
     select watermark, recorded_at, status = 'passed' and code_hash = (
         select argMax(code_hash, recorded_at) from {{ test_passes_table() }}
         where test = '{{ model.unique_id }}' and status = 'pending' and invocation_id = '{{ invocation_id }}'
     ) as same_test
     from {{ test_passes_table() }}
     where test = '{{ model.unique_id }}' and relation_uuid = {{ relation_uuid(scope.relation) }}
 ))
{%- endmacro %}

{#- The highest block number of the part a row is read from, from the part’s name
    (`<partition>_<min block>_<max block>_<level>`; partition ids have no underscore): a filter
    on it lets the engine skip the parts written before the last pass without reading them.
    Merged parts mix old and new rows, hence the row filter beside it. -#}
{% macro part_max_block() -%}
toUInt64(splitByChar('_', _part)[3])
{%- endmacro %}

{#- dbt’s `where` config, then the scope: every row whose first key column holds a value of a
    row written since the last pass (NULL matches NULL, as in GROUP BY). Without a pass (a new
    test, a full refresh) the relation is read as it is: the mark is a constant of the query (its
    WITH reaches both branches of the union and the key subquery), so one branch’s condition is
    false and the engine reads nothing for it. Through the key filter, every key
    would be read twice: on the 10x full refresh, fct_order_items’ key test took 8.7 CPU s. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set scope = test_scope() -%}
    {%- if scope is none -%}
        {{ return(dbt.default__get_where_subquery(relation)) }}
    {%- endif -%}
    {%- set where = config.get('where', '') -%}
    {%- set filter = '(' ~ where ~ ') and ' if where else '' -%}
    {%- set scoped -%}
        (with {{ last_test_pass(scope) }} as last_pass
         select * from {{ relation }}
         where {{ filter }}last_pass < 0
         union all
         select * from {{ relation }}
         where {{ filter }}last_pass >= 0 and {{ scope.key }} in (
             select {{ scope.key }} from {{ relation }}
             where {{ filter }}{{ part_max_block() }} > last_pass and _block_number > last_pass
         )
         settings transform_null_in = 1) dbt_subquery
    {%- endset -%}
    {{ return(scoped) }}
{%- endmacro %}

{#- dbt’s test materialization, after one step for a scoped test: the 'pending' row, with the
    hash of the test’s SQL and the mark it reaches, captured before the test reads the table:
    the highest block number of the table’s data parts (a part’s highest is that of its rows),
    read from the parts’ metadata instead of the rows. -#}
{%- materialization test, default -%}
    {%- set scope = test_scope() -%}
    {%- if scope is not none -%}
        {%- call statement('test_scope') -%}
            insert into {{ test_passes_table() }} (test, relation_uuid, code_hash, watermark, status, invocation_id)
            select '{{ model.unique_id }}', {{ relation_uuid(scope.relation) }}, '{{ local_md5(sql | replace(invocation_id, '')) }}',
                toInt64(max(max_block_number)), 'pending', '{{ invocation_id }}'
            from system.parts
            where database = '{{ scope.relation.schema }}' and table = '{{ scope.relation.identifier }}'
                and active and not startsWith(name, 'patch-')
        {%- endcall -%}
    {%- endif -%}
    {{ return(dbt.materialization_test_default()) }}
{%- endmaterialization -%}

{#- on-run-end: the tests of this run that found no failing row (a test below its warn_if
    threshold passes with failures) record their pending mark as passed. -#}
{% macro record_test_passes(results) -%}
    {%- set passed = [] -%}
    {%- for result in results -%}
        {%- if result.node.resource_type == 'test' and result.status == 'pass' and result.failures == 0
               and result.node.test_metadata and result.node.test_metadata.name in scoped_test_kinds() -%}
            {%- do passed.append("'" ~ result.node.unique_id ~ "'") -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if execute and passed -%}
        insert into {{ test_passes_table() }} (test, relation_uuid, code_hash, watermark, status, invocation_id)
        select test, relation_uuid, code_hash, watermark, 'passed', invocation_id
        from {{ test_passes_table() }}
        where status = 'pending' and invocation_id = '{{ invocation_id }}' and test in ({{ passed | join(', ') }})
    {%- endif -%}
{%- endmacro %}
