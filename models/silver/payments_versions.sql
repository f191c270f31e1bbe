{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ record_silver_rules() }}",
        order_by='(payment_id, _ingested_at, _row_number)',
        partition_by='toYear(_file_date)',
    )
}}
{#- Every landed payment row once, typed, with its verdict (see orders_versions). -#}

with

{{ currency_lookup() }} as currency_map,

bronze_rows as (
    select {{ raw_with_lineage('payments') }}
    from ({{ new_bronze_rows('payments') }})
),

typed as (
    select
        *,
        {{ trim_space('raw_payment_id') }} as payment_id,
        {{ trim_space('raw_order_id') }} as order_id,
        {{ parse_timestamp('raw_payment_ts') }} as payment_ts,
        {{ clean_code('raw_method') }} as payment_method,
        {{ parse_decimal('raw_amount') }} as amount,
        {{ to_currency('raw_currency') }} as currency_code,
        {{ clean_code('raw_status') }} as payment_status,
        {{ parse_timestamp('raw_updated_at') }} as updated_at
    from bronze_rows
),

checked as (
    select
        *,
        multiIf(
            payment_id = '' or order_id = '', 'missing_key',
            payment_ts is null or updated_at is null, 'bad_timestamp',
            {{ is_future('payment_ts') }} or {{ is_future('updated_at') }}, 'future_timestamp',
            currency_code = '', 'bad_currency',
            amount is null, 'bad_number',
            payment_method not in (select methods.payment_method from {{ ref('payment_methods') }} as methods)
                or payment_status not in (
                    select statuses.payment_status from {{ ref('payment_statuses') }} as statuses
                ),
            'bad_value',
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
