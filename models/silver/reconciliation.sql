{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(entity, file_date)',
    )
}}
{#- Per entity and file day: bronze rows = silver rows + duplicates + superseded versions +
    quarantined rows (SPEC section 5). Each term is counted on its own: silver rows in the
    silver table, superseded versions from the versions alone (valid rows that are not the
    latest valid version of their key), so a row lost or doubled anywhere shows up as
    is_balanced = false. Small (entities x days): a table
    rebuilt each run. -#}

{%- set entities = ['customers', 'products', 'orders', 'order_items', 'payments'] %}

with

landed_batches as (
    select batch_id from {{ source('bronze', 'ingest_log') }} where status = 'landed'
),

counts as (
    {%- for entity in entities %}
    select
        '{{ entity }}' as entity,
        _file_date as file_date,
        count() as bronze_rows,
        toUInt64(0) as silver_rows,
        toUInt64(0) as duplicate_rows,
        toUInt64(0) as superseded_rows,
        toUInt64(0) as quarantined_rows
    from {{ source('bronze', entity) }}
    where _batch_id in (select batch_id from landed_batches)
    group by file_date

    union all

    select
        '{{ entity }}' as entity,
        _file_date as file_date,
        toUInt64(0) as bronze_rows,
        count() as silver_rows,
        toUInt64(0) as duplicate_rows,
        toUInt64(0) as superseded_rows,
        toUInt64(0) as quarantined_rows
    from {{ ref(entity) }}
    group by file_date

    union all

    select
        '{{ entity }}' as entity,
        _file_date as file_date,
        toUInt64(0) as bronze_rows,
        toUInt64(0) as silver_rows,
        countIf(_is_duplicate) as duplicate_rows,
        countIf(
            not _is_duplicate and reason = ''
            and (_batch_id, _row_number) not in (
                {#- the latest valid version of each key, decided here on its own, not read from silver -#}
                select argMax(
                    (_batch_id, _row_number),
                    ({{ 'updated_at, ' if entity != 'order_items' }}_ingested_at, _row_number)
                )
                from {{ ref(entity ~ '_versions') }}
                where not _is_duplicate and reason = ''
                group by {{ 'order_id, line_number' if entity == 'order_items' else entity[:-1] ~ '_id' }}
            )
        ) as superseded_rows,
        countIf(not _is_duplicate and reason != '') as quarantined_rows
    from {{ ref(entity ~ '_versions') }}
    group by file_date
    {%- if not loop.last %}

    union all
    {%- endif %}
    {%- endfor %}
),

final as (
    select
        toLowCardinality(entity) as entity,
        file_date,
        sum(bronze_rows) as bronze_rows,
        sum(silver_rows) as silver_rows,
        sum(duplicate_rows) as duplicate_rows,
        sum(superseded_rows) as superseded_rows,
        sum(quarantined_rows) as quarantined_rows,
        toBool(bronze_rows = silver_rows + duplicate_rows + superseded_rows + quarantined_rows) as is_balanced
    from counts
    group by entity, file_date
)

select * from final
