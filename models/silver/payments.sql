{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert',
        unique_key='payment_id',
        order_by='(payment_id)',
        settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
        query_settings={'lightweight_delete_mode': 'lightweight_update'},
    )
}}
{#- One row per payment at its latest valid version (authorized, then captured, ...). -#}

with

latest as (
    {{ latest_valid_versions('payments', ['payment_id']) }}
),

final as (
    select
        payment_id,
        order_id,
        assumeNotNull(payment_ts) as payment_ts,
        toLowCardinality(payment_method) as payment_method,
        assumeNotNull(amount) as amount,
        toLowCardinality(currency_code) as currency_code,
        toLowCardinality(payment_status) as payment_status,
        assumeNotNull(updated_at) as updated_at,
        _source_file,
        _row_number,
        _file_date,
        _batch_id,
        _ingested_at
    from latest
)

select * from final
