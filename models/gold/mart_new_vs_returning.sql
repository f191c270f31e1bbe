{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(order_date)',
    )
}}
{#- New, returning and guest business by order date (UTC), one row per date with at least one
    revenue order. Rebuilt from fct_orders every run (a few thousand rows out). -#}

with

revenue_orders as (
    select * from {{ ref('fct_orders') }}
    where is_revenue_order
),

first_revenue_orders as (
    select
        customer_id,
        first_revenue_order_date
    from {{ ref('int_customer_first_revenue_orders') }}
),

classified as (
    select
        *,
        multiIf(
            customer_id is null, 'guest',
            (assumeNotNull(customer_id), order_date) in (
                select first_revenue_orders.* from first_revenue_orders
            ), 'new',
            'returning'
        ) as customer_type
    from revenue_orders
),

daily as (
    select
        order_date,
        uniqExactIf(customer_id, customer_type = 'new') as new_customers,
        uniqExactIf(customer_id, customer_type = 'returning') as returning_customers,
        countIf(customer_type = 'new') as new_customer_orders,
        countIf(customer_type = 'returning') as returning_customer_orders,
        countIf(customer_type = 'guest') as guest_orders,
        sumIf(net_revenue_usd, customer_type = 'new') as exact_new_customer_revenue_usd,
        sumIf(net_revenue_usd, customer_type = 'returning') as exact_returning_customer_revenue_usd,
        sumIf(net_revenue_usd, customer_type = 'guest') as exact_guest_revenue_usd
    from classified
    group by order_date
),

final as (
    select
        order_date,
        new_customers,
        returning_customers,
        new_customer_orders,
        returning_customer_orders,
        guest_orders,
        {{ usd_cents('exact_new_customer_revenue_usd') }} as new_customer_revenue_usd,
        {{ usd_cents('exact_returning_customer_revenue_usd') }} as returning_customer_revenue_usd,
        {{ usd_cents('exact_guest_revenue_usd') }} as guest_revenue_usd,
        if(
            new_customers + returning_customers > 0,
            returning_customers / (new_customers + returning_customers),
            null
        ) as returning_customer_share
    from daily
)

select * from final
