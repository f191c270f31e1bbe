{{
    config(
        materialized='table',
        order_by='(customer_id)',
    )
}}
{#- Each customer’s first revenue order, the one place that decides who is new and who is
    returning on a day, and which cohort a customer belongs to (mart_daily_sales,
    mart_new_vs_returning, mart_cohort_retention). It depends on all of a customer’s orders, so
    it is not kept in the incremental fct_orders: recomputing it there would drag every order
    of every customer with a new order into each run. One aggregation over the revenue orders
    instead, a table rebuilt every run. -#}

with

revenue_orders as (
    select * from {{ ref('fct_orders') }}
    where is_revenue_order and customer_id is not null
),

final as (
    select
        assumeNotNull(customer_id) as customer_id,
        {#- The earliest order, ties by order_id: (order_ts, order_id) as one string, 14 digits
            of milliseconds since 1900 then the id, which sorts as the tuple does. The engine
            compares tuples value by value per row: 1.9 CPU seconds on ten years of orders
            against 1.0 s for the string. #}
        argMin(
            order_id,
            concat(leftPad(toString({{ millis_since_1900('order_ts') }}), 14, '0'), order_id)
        ) as first_revenue_order_id,
        min(order_ts) as first_revenue_order_ts,
        toDate(min(order_ts)) as first_revenue_order_date,
        toStartOfMonth(min(order_ts)) as cohort_month
    from revenue_orders
    group by customer_id
)

select * from final
