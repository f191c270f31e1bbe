{{
    config(
        materialized='table',
        order_by='(order_date)',
        query_settings={'join_use_nulls': 0},
    )
}}
{#- New, returning and guest business by order date (UTC), one row per date with at least one
    revenue order. Rebuilt from fct_orders every run (a few thousand rows out).
    join_use_nulls = 0: the engine’s default, pinned as in the other marts that left join. -#}

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

{# New: an order on the day of its customer’s first revenue order. Looked up by customer_id
    in a join, not as a (customer_id, date) pair in a set of every customer’s: the 10x history’s
    statement 0.85-1.01 CPU s against 1.25-1.33 s, the same rows. Every customer of a revenue
    order has a first revenue order, so the join always finds one. -#}
classified as (
    select
        revenue_orders.*,
        multiIf(
            revenue_orders.customer_id is null, 'guest',
            revenue_orders.order_date = first_revenue_orders.first_revenue_order_date, 'new',
            'returning'
        ) as customer_type
    from revenue_orders
    left join first_revenue_orders
        on revenue_orders.customer_id = first_revenue_orders.customer_id
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
