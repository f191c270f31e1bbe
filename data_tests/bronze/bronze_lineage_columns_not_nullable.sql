{#- No lineage column of bronze can hold NULL: the loader makes them of types that are not
    Nullable (`LINEAGE` in src/ecom/contract.py), so a `not_null` test on one of them could
    never fail, while costing dbt a node on every run. This checks the types instead, once for
    every table: a row for each lineage column (a column of the source's YAML with a leading
    underscore, as `source_columns` reads them) that is missing or Nullable (also inside
    LowCardinality), and for the ingest log's file_path. -#}

{%- set log = source('bronze', 'ingest_log') %}
{%- set expected = [(log.identifier, 'file_path')] %}
{%- for entity in ['customers', 'products', 'orders', 'order_items', 'payments'] %}
    {%- set relation = source('bronze', entity) %}
    {%- if execute %}
        {%- for name in graph.sources['source.' ~ project_name ~ '.bronze.' ~ entity].columns
                if name.startswith('_') %}
            {%- do expected.append((relation.identifier, name)) %}
        {%- endfor %}
    {%- endif %}
{%- endfor %}

select table_name, column_name
from values(
    'table_name String, column_name String',
    {%- for table_name, column_name in expected %}
    ('{{ table_name }}', '{{ column_name }}'){{ ',' if not loop.last }}
    {%- endfor %}
)
where (table_name, column_name) not in (
    select table, name from system.columns
    where database = '{{ log.schema }}' and type not like '%Nullable(%'
)
