{#- mart_daily_sales and mart_new_vs_returning agree with fct_orders, with
    int_customer_first_revenue_orders and with each other: the same days, and per day, revenue
    orders, new customers and net revenue (within half a cent per rounded figure). -#}

{#- Shown in Dagster as a check of mart_daily_sales (it reads several models). -#}
{{ config(meta={'dagster': {'ref': {'name': 'mart_daily_sales'}}}) }}

with

orders_by_day as (
    select
        order_date,
        countIf(is_revenue_order) as revenue_orders,
        sumIf(net_revenue_usd, is_revenue_order) as net_revenue_usd
    from {{ ref('fct_orders') }}
    group by order_date
),

first_revenue_orders_by_day as (
    select
        first_revenue_order_date as order_date,
        count() as first_revenue_orders
    from {{ ref('int_customer_first_revenue_orders') }}
    group by order_date
),

daily_sales as (
    select * from {{ ref('mart_daily_sales') }}
),

new_vs_returning as (
    select * from {{ ref('mart_new_vs_returning') }}
)

select daily_sales.order_date, 'daily sales differ from fct_orders' as problem
from daily_sales
inner join orders_by_day on daily_sales.order_date = orders_by_day.order_date
where daily_sales.revenue_orders != orders_by_day.revenue_orders
    or abs(daily_sales.net_revenue_usd - orders_by_day.net_revenue_usd) > 0.005

union all

select order_date, 'day of fct_orders missing from daily sales' as problem
from orders_by_day
where order_date not in (select order_date from daily_sales)

union all

select order_date, 'day of daily sales not in fct_orders' as problem
from daily_sales
where order_date not in (select order_date from orders_by_day)

union all

select first_revenue_orders_by_day.order_date, 'new customers differ from first revenue orders' as problem
from first_revenue_orders_by_day
left join daily_sales on first_revenue_orders_by_day.order_date = daily_sales.order_date
where daily_sales.new_customers != first_revenue_orders_by_day.first_revenue_orders

union all

select daily_sales.order_date, 'new vs returning differs from daily sales' as problem
from daily_sales
inner join new_vs_returning on daily_sales.order_date = new_vs_returning.order_date
where daily_sales.new_customers != new_vs_returning.new_customers
    or daily_sales.returning_customers != new_vs_returning.returning_customers
    or daily_sales.guest_revenue_orders != new_vs_returning.guest_orders
    or daily_sales.revenue_orders != new_vs_returning.new_customer_orders
        + new_vs_returning.returning_customer_orders + new_vs_returning.guest_orders
    or abs(
        daily_sales.net_revenue_usd - new_vs_returning.new_customer_revenue_usd
        - new_vs_returning.returning_customer_revenue_usd - new_vs_returning.guest_revenue_usd
    ) > 0.02

union all

select order_date, 'day with revenue orders missing from new vs returning' as problem
from daily_sales
where revenue_orders > 0
    and order_date not in (select order_date from new_vs_returning)
