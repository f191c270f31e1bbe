{#- No lineage column of bronze can hold NULL: the loader makes them of types that are not
    Nullable (`LINEAGE` in src/ecom/contract.py), so a `not_null` test on one of them could
    never fail, while costing dbt a node on every run. This checks the types instead, once for
    every table: a row for each lineage column that is missing or Nullable (also inside
    LowCardinality), and for the ingest log's file_path. -#}

{%- set lineage = ['_source_file', '_row_number', '_file_sha256', '_file_date', '_batch_id', '_ingested_at'] %}
{%- set entities = ['customers', 'products', 'orders', 'order_items', 'payments'] %}
{%- set log = source('bronze', 'ingest_log') %}

with

expected as (
    select table_name, column_name
    from values(
        'table_name String, column_name String',
        {%- for entity in entities %}
        {%- set relation = source('bronze', entity) %}
        {%- for column in lineage %}
        ('{{ relation.identifier }}', '{{ column }}'),
        {%- endfor %}
        {%- endfor %}
        ('{{ log.identifier }}', 'file_path')
    )
)

select table_name, column_name
from expected
where (table_name, column_name) not in (
    select table, name from system.columns
    where database = '{{ log.schema }}' and type not like '%Nullable(%'
)
