{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(entity, file_date)',
    )
}}
{#- Per entity and file day: bronze rows = silver rows + duplicates + superseded versions +
    quarantined rows (SPEC section 5). Each term is counted on its own: silver rows in the
    silver table, superseded versions from the versions alone (valid rows less the latest
    valid version of each key, counted on the day of that version's file), so a row lost or
    doubled anywhere shows up as is_balanced = false. Small (entities x days): a table
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
        toInt64(count()) as bronze_rows,
        toInt64(0) as silver_rows,
        toInt64(0) as duplicate_rows,
        toInt64(0) as superseded_rows,
        toInt64(0) as quarantined_rows
    from {{ source('bronze', entity) }}
    where _batch_id in (select batch_id from landed_batches)
    group by file_date

    union all

    select
        '{{ entity }}' as entity,
        _file_date as file_date,
        toInt64(0) as bronze_rows,
        toInt64(count()) as silver_rows,
        toInt64(0) as duplicate_rows,
        toInt64(0) as superseded_rows,
        toInt64(0) as quarantined_rows
    from {{ ref(entity) }}
    group by file_date

    union all

    {# superseded = valid versions - latest valid versions, per file day: the latest valid version
       of each key is decided here on its own (argMax), not read from silver. #}
    select
        '{{ entity }}' as entity,
        _file_date as file_date,
        toInt64(0) as bronze_rows,
        toInt64(0) as silver_rows,
        toInt64(countIf(_is_duplicate)) as duplicate_rows,
        toInt64(countIf(not _is_duplicate and reason = '')) as superseded_rows,
        toInt64(countIf(not _is_duplicate and reason != '')) as quarantined_rows
    from {{ ref(entity ~ '_versions') }}
    group by file_date

    union all

    select
        '{{ entity }}' as entity,
        latest_file_date as file_date,
        toInt64(0) as bronze_rows,
        toInt64(0) as silver_rows,
        toInt64(0) as duplicate_rows,
        -toInt64(count()) as superseded_rows,
        toInt64(0) as quarantined_rows
    from (
        select argMax(
            _file_date,
            ({{ 'updated_at, ' if entity != 'order_items' }}_ingested_at, _row_number)
        ) as latest_file_date
        from {{ ref(entity ~ '_versions') }}
        where not _is_duplicate and reason = ''
        group by {{ 'order_id, line_number' if entity == 'order_items' else entity[:-1] ~ '_id' }}
    )
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
        toUInt64(sum(bronze_rows)) as bronze_rows,
        toUInt64(sum(silver_rows)) as silver_rows,
        toUInt64(sum(duplicate_rows)) as duplicate_rows,
        toUInt64(sum(superseded_rows)) as superseded_rows,
        toUInt64(sum(quarantined_rows)) as quarantined_rows,
        toBool(bronze_rows = silver_rows + duplicate_rows + superseded_rows + quarantined_rows) as is_balanced
    from counts
    group by entity, file_date
)

select * from final
