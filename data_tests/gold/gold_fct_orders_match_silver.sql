{#- fct_orders holds every order header of silver exactly once, and nothing else: the
    incremental runs miss no order and keep no stale one. One aggregation over both tables. -#}

{#- Shown in Dagster as a check of fct_orders (it reads several models). -#}
{{ config(meta={'dagster': {'ref': {'name': 'fct_orders'}}}) }}

with

both_sides as (
    select order_id, 1 as in_silver, 0 as in_fct from {{ ref('orders') }}
    union all
    select order_id, 0 as in_silver, 1 as in_fct from {{ ref('fct_orders') }}
)

select
    order_id,
    multiIf(
        sum(in_fct) = 0, 'missing from fct_orders',
        sum(in_silver) = 0, 'not in silver.orders',
        'more than one row'
    ) as problem
from both_sides
group by order_id
having sum(in_silver) != 1 or sum(in_fct) != 1
