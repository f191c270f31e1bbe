{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert',
        unique_key='product_id',
        order_by='(product_id)',
        settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
        query_settings={'lightweight_delete_mode': 'lightweight_update'},
    )
}}
{#- One row per product at its latest valid version. -#}

with

latest as (
    {{ latest_valid_versions('products', ['product_id']) }}
),

final as (
    select
        product_id,
        sku,
        product_name,
        toLowCardinality(category) as category,
        toLowCardinality(subcategory) as subcategory,
        brand,
        assumeNotNull(unit_cost_usd) as unit_cost_usd,
        assumeNotNull(list_price) as list_price,
        toLowCardinality(currency_code) as currency_code,
        assumeNotNull(is_active) as is_active,
        assumeNotNull(updated_at) as updated_at,
        _source_file,
        _row_number,
        _file_date,
        _batch_id,
        _ingested_at
    from latest
)

select * from final
