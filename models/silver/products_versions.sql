{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ record_silver_rules() }}",
        order_by='(product_id, _ingested_at, _row_number)',
        partition_by='toYear(_file_date)',
    )
}}
{#- Every landed product row once, typed, with its verdict (see orders_versions). -#}

with

{{ currency_lookup() }} as currency_map,

bronze_rows as (
    select {{ raw_with_lineage('products') }}
    from ({{ new_bronze_rows('products') }})
),

typed as (
    select
        *,
        {{ trim_space('raw_product_id') }} as product_id,
        {{ trim_space('raw_sku') }} as sku,
        {{ trim_space('raw_product_name') }} as product_name,
        {{ clean_code('raw_category') }} as category,
        {{ clean_code('raw_subcategory') }} as subcategory,
        {{ trim_space('raw_brand') }} as brand,
        {{ parse_decimal('raw_unit_cost_usd') }} as unit_cost_usd,
        {{ parse_decimal('raw_list_price') }} as list_price,
        {{ to_currency('raw_currency') }} as currency_code,
        if({{ trim_space('raw_is_active') }} = '', true, {{ parse_bool('raw_is_active') }}) as is_active,
        {{ parse_timestamp('raw_updated_at') }} as updated_at
    from bronze_rows
),

checked as (
    select
        *,
        multiIf(
            product_id = '', 'missing_key',
            updated_at is null, 'bad_timestamp',
            {{ is_future('updated_at') }}, 'future_timestamp',
            currency_code = '', 'bad_currency',
            unit_cost_usd is null or list_price is null, 'bad_number',
            is_active is null, 'bad_value',
            ''
        ) as reason
    from typed
),

final as (
    select
        * except (_half_fingerprint),
        {{ is_duplicate() }} as _is_duplicate
    from checked
)

select * from final
