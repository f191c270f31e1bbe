{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert',
        unique_key='order_id',
        order_by='(order_id)',
        partition_by='toYear(order_date)',
        settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
        query_settings={'lightweight_delete_mode': 'lightweight_update'},
    )
}}
{#- One row per order at its latest valid version. delete+insert on the key: a daily run
    replaces only the orders that changed (status moves re-send an order days later). -#}

with

latest as (
    {{ latest_valid_versions('orders', ['order_id']) }}
),

final as (
    select
        order_id,
        customer_id,
        customer_id is null as is_guest,
        assumeNotNull(order_ts) as order_ts,
        toDate(assumeNotNull(order_ts)) as order_date,
        toLowCardinality(order_status) as order_status,
        toLowCardinality(channel) as channel,
        toLowCardinality(currency_code) as currency_code,
        shipping_fee,
        order_discount,
        coupon_code,
        toLowCardinality(shipping_country_code) as shipping_country_code,
        assumeNotNull(updated_at) as updated_at,
        _source_file,
        _row_number,
        _file_date,
        _batch_id,
        _ingested_at
    from latest
)

select * from final
