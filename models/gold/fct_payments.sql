{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert',
        on_schema_change='fail',
        unique_key='payment_id',
        order_by='(payment_date, payment_id)',
        partition_by='toYear(payment_date)',
        settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
        query_settings={'join_use_nulls': 0, 'lightweight_delete_mode': 'lightweight_update'},
    )
}}
{#- One row per payment at its latest status, converted to USD at the rate of its own currency
    for the month of its order’s order_ts (SPEC 7), or of payment_ts while the order header has
    not arrived (see mart_data_quality; a payment_ts before the currency’s first month: that
    month). An incremental run (delete_insert on payment_id) reads
    the payments landed since the last run and the payments of the orders landed since, whose
    rate month may have come or moved with them; `_ingested_at` is the newest landing of the
    payment and its order header, so those orders are read once. order_id is kept as a
    degenerate key.
    join_use_nulls = 0 (the engine’s default, pinned): an unmatched LEFT JOIN column holds its
    type’s default ('' or 0), handled explicitly below. -#}

with

{{ fx_first_month_lookup() }} as fx_first_month,

payment_statuses as (
    select * from {{ ref('payment_statuses') }}
),

payments as (
    select * from {{ ref('payments') }}
    {%- if is_incremental() %}
    where _ingested_at > {{ gold_watermark() }}
        or order_id in (
            select orders.order_id from {{ ref('orders') }} as orders
            where orders._ingested_at > {{ gold_watermark() }}
        )
    {%- endif %}
),

order_months as (
    select
        order_id,
        toStartOfMonth(order_ts) as order_month,
        _ingested_at as order_ingested_at
    from {{ ref('orders') }}
    {%- if is_incremental() %}
    where order_id in (select payments.order_id from payments)
    {%- endif %}
),

rate_months as (
    select
        payments.*,
        {#- A payment whose order has not arrived, timed before its currency’s first FX month
            (silver quarantines such orders, not payments: a payment is priced at its order’s
            month), uses that first month rather than no rate. #}
        greatest(
            if(order_months.order_id != '', order_months.order_month, toStartOfMonth(payments.payment_ts)),
            transform(toString(payments.currency_code), fx_first_month.1, fx_first_month.2, toDate(0))  -- noqa: RF02
        ) as rate_month,
        {#- Unmatched: 1970-01-01, never the greatest. #}
        greatest(payments._ingested_at, order_months.order_ingested_at) as newest_ingested_at
    from payments
    left join order_months on payments.order_id = order_months.order_id
),

payment_methods as (
    select payment_method from {{ ref('dim_payment_method') }}
    where not is_unknown
),

fx_rates as (
    {{ fx_rates() }}
),

converted as (
    select
        payments.*,
        {#- A currency without any rate gets 0, which the tests on usd_per_unit report. #}
        fx_rates.fx_month as fx_month,
        fx_rates.usd_per_unit as usd_per_unit
    from rate_months as payments
    asof left join fx_rates
        on payments.currency_code = fx_rates.currency_code
        and payments.rate_month >= fx_rates.fx_month
),

final as (
    select
        payment_id,
        order_id,
        payment_ts,
        toDate(payment_ts) as payment_date,
        toLowCardinality(
            if(
                payment_method in (select payment_methods.payment_method from payment_methods),
                payment_method,
                'unknown'
            )
        ) as payment_method,
        payment_status,
        cast(
            payment_status in (
                select payment_statuses.payment_status from payment_statuses
                where toBool(payment_statuses.is_captured)
            ) as Bool
        ) as is_captured,
        currency_code,
        amount,
        fx_month,
        usd_per_unit,
        {{ to_usd('amount', 'usd_per_unit') }} as amount_usd,
        _source_file,
        newest_ingested_at as _ingested_at
    from converted
)

select * from final
