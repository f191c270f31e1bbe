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

{#- The orders paid with `$` whose currency is another written `$` too (CAD, MXN; see
    order_currency), as (orders, currencies): the order's latest valid version landed so far. A
    payment carries no country; its `$` is its order's currency, USD while the order has not
    landed. Only the orders of the new `$` payments are looked up. -#}
(
    select (groupArray(order_id), groupArray(toString(currency)))
    from (
        select
            order_id,
            argMax(currency_code, {{ version_order() }}) as currency
        from {{ ref('orders_versions') }}
        where
            order_id in (
                select {{ trim_space('raw_order_id') }} from bronze_rows
                where {{ trim_space('raw_currency') }} = '$'
            )
            and reason = '' and not _is_duplicate
        group by order_id
        having currency in ('CAD', 'MXN')
    )
) as dollar_orders,

typed as (
    select
        *,
        {{ trim_space('raw_payment_id') }} as payment_id,
        {{ trim_space('raw_order_id') }} as order_id,
        {{ parse_timestamp('raw_payment_ts') }} as payment_ts,
        {{ clean_code('raw_method') }} as payment_method,
        {{ parse_decimal('raw_amount') }} as amount,
        if(
            {{ trim_space('raw_currency') }} = '$',
            transform(order_id, dollar_orders.1, dollar_orders.2, {{ to_currency('raw_currency') }}),
            {{ to_currency('raw_currency') }}
        ) as currency_code,
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
