{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert',
        unique_key='customer_id',
        order_by='(customer_id)',
        settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
        query_settings={'lightweight_delete_mode': 'lightweight_update'},
    )
}}
{#- One row per customer at the latest valid version (history: customers_versions_valid). -#}

with

latest as (
    {{ latest_valid_versions('customers', ['customer_id']) }}
),

final as (
    select
        customer_id,
        first_name,
        last_name,
        email,
        is_email_valid,
        phone,
        birth_date,
        assumeNotNull(signup_at) as signup_at,
        toLowCardinality(country_code) as country_code,
        city,
        postal_code,
        toLowCardinality(segment) as segment,
        assumeNotNull(is_marketing_opt_in) as is_marketing_opt_in,
        assumeNotNull(updated_at) as updated_at,
        _source_file,
        _row_number,
        _file_date,
        _batch_id,
        _ingested_at
    from latest
)

select * from final
