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

{# A payment carries no country: its `$` is its order's currency where that is another written
    `$` too (CAD, MXN; see order_currency), as the order's valid versions landed last before the
    payment say (the latest of them if several landed at once); USD while none has landed. By
    landing, not as of the run, so that a full refresh reads what the incremental runs read.
    Only the orders of the new `$` payments are looked up. -#}
dollar_orders as (
    select
        order_id,
        _ingested_at,
        toString(argMax(currency_code, {{ version_order() }})) as order_currency
    from {{ ref('orders_versions') }}
    where
        order_id in (
            select {{ trim_space('raw_order_id') }} from bronze_rows
            where {{ trim_space('raw_currency') }} = '$'
        )
        and reason = '' and not _is_duplicate
    group by order_id, _ingested_at
),

typed as (
    select
        bronze_rows.*,
        {{ trim_space('raw_payment_id') }} as payment_id,
        {{ trim_space('raw_order_id') }} as order_id,
        {{ parse_timestamp('raw_payment_ts') }} as payment_ts,
        {{ clean_code('raw_method') }} as payment_method,
        {{ parse_decimal('raw_amount') }} as amount,
        if(
            {{ trim_space('raw_currency') }} = '$' and dollar_orders.order_currency in {{ other_dollar_currencies() }},
            dollar_orders.order_currency,
            {{ to_currency('raw_currency') }}
        ) as currency_code,
        {{ clean_code('raw_status') }} as payment_status,
        {{ parse_timestamp('raw_updated_at') }} as updated_at
    from bronze_rows
    asof left join dollar_orders
        on {{ trim_space('bronze_rows.raw_order_id') }} = dollar_orders.order_id
        and bronze_rows._ingested_at >= dollar_orders._ingested_at
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
