{{
    config(
        materialized='table',
        order_by='(order_date)',
        query_settings={'join_use_nulls': 0},
    )
}}
{#- Daily sales by order date (UTC), one row per date with at least one order. A table rebuilt
    every run from fct_orders: one pass over the orders, a few thousand rows out, and a run can
    never leave a day half updated when an old order changes status. join_use_nulls = 0 (the
    engine’s default, pinned): a day without new customers gets 0 from the LEFT JOIN. -#}

with

fct_orders as (
    select * from {{ ref('fct_orders') }}
),

first_revenue_orders as (
    select * from {{ ref('int_customer_first_revenue_orders') }}
),

daily as (
    select
        order_date,
        count() as orders_placed,
        countIf(is_revenue_order) as revenue_orders,
        sumIf(net_revenue_usd, is_revenue_order) as exact_net_revenue_usd,
        sumIf(item_quantity, is_revenue_order) as items_sold,
        uniqExactIf(customer_id, is_revenue_order and customer_id is not null) as revenue_customers,
        countIf(is_revenue_order and is_guest) as guest_revenue_orders,
        countIf(is_returned_order) as returned_orders,
        sumIf(net_revenue_usd, is_returned_order) as exact_returned_revenue_usd,
        countIf(is_cancelled_order) as cancelled_orders
    from fct_orders
    group by order_date
),

new_customers_by_day as (
    select
        first_revenue_order_date as order_date,
        count() as new_customers
    from first_revenue_orders
    group by order_date
),

final as (
    select
        daily.order_date as order_date,
        daily.orders_placed as orders_placed,
        daily.revenue_orders as revenue_orders,
        {{ usd_cents('daily.exact_net_revenue_usd') }} as net_revenue_usd,
        daily.items_sold as items_sold,
        if(
            daily.revenue_orders > 0,
            {{ usd_cents('daily.exact_net_revenue_usd / daily.revenue_orders') }},
            null
        ) as aov_usd,
        new_customers_by_day.new_customers as new_customers,
        {#- A new customer has a revenue order that day (the first one): every other customer
            with a revenue order that day had one earlier. #}
        toUInt64(daily.revenue_customers - new_customers_by_day.new_customers) as returning_customers,
        daily.guest_revenue_orders as guest_revenue_orders,
        daily.returned_orders as returned_orders,
        {{ usd_cents('daily.exact_returned_revenue_usd') }} as returned_revenue_usd,
        daily.cancelled_orders as cancelled_orders,
        daily.cancelled_orders / daily.orders_placed as cancellation_rate
    from daily
    left join new_customers_by_day
        on daily.order_date = new_customers_by_day.order_date
)

select * from final
