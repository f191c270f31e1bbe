{#- Lines and orders agree: fct_order_items holds exactly the silver lines whose header is in
    silver, and each order's line count, quantity and gross amount in fct_orders are the sums
    of its lines in fct_order_items. -#}

with

silver_lines as (
    select order_id, line_number from {{ ref('order_items') }}
    where order_id in (select order_id from {{ ref('orders') }})
),

fct_lines as (
    select * from {{ ref('fct_order_items') }}
),

line_totals as (
    select
        order_id,
        count() as line_count,
        sum(quantity) as item_quantity,
        sum(line_amount) as gross_line_amount
    from fct_lines
    group by order_id
),

fct_orders as (
    select * from {{ ref('fct_orders') }}
)

select order_id, 'silver line missing from fct_order_items' as problem
from silver_lines
where (order_id, line_number) not in (select order_id, line_number from fct_lines)

union all

select order_id, 'fct_order_items line not in silver' as problem
from fct_lines
where (order_id, line_number) not in (select order_id, line_number from silver_lines)

union all

select fct_orders.order_id, 'order totals differ from its lines' as problem
from fct_orders
{#- An order without lines gets 0s from the LEFT JOIN defaults, which is what it must have. #}
left join line_totals on fct_orders.order_id = line_totals.order_id
where fct_orders.line_count != line_totals.line_count
    or fct_orders.item_quantity != line_totals.item_quantity
    or fct_orders.gross_line_amount != line_totals.gross_line_amount
