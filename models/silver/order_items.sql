{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert',
        unique_key=['order_id', 'line_number'],
        order_by='(order_id, line_number)',
        settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
        query_settings={'lightweight_delete_mode': 'lightweight_update'},
    )
}}
{#- One row per order line (order_id + line_number) at its latest valid version. Lines stay
    here even when their order header has not arrived or their product is not in the catalog;
    gold decides what they count for. -#}

with

latest as (
    {{ latest_valid_versions('order_items', ['order_id', 'line_number'], has_updated_at=false) }}
),

final as (
    select
        order_id,
        assumeNotNull(line_number) as line_number,
        product_id,
        assumeNotNull(quantity) as quantity,
        assumeNotNull(unit_price) as unit_price,
        line_discount,
        toDecimal64(assumeNotNull(quantity) * assumeNotNull(unit_price) - line_discount, 2) as line_amount,
        _source_file,
        _row_number,
        _file_date,
        _batch_id,
        _ingested_at
    from latest
)

select * from final
