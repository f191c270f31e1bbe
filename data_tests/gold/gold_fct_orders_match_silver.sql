{#- fct_orders holds every order header of silver exactly once, and nothing else: the
    incremental runs miss no order and keep no stale one. -#}

with

silver_orders as (
    select order_id from {{ ref('orders') }}
),

fct_orders as (
    select order_id from {{ ref('fct_orders') }}
)

select order_id, 'missing from fct_orders' as problem
from silver_orders
where order_id not in (select order_id from fct_orders)

union all

select order_id, 'not in silver.orders' as problem
from fct_orders
where order_id not in (select order_id from silver_orders)
