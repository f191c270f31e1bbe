{#- Lines and orders agree: fct_order_items holds exactly the silver lines whose header is in
    silver, and each order's line count, quantity and gross amount in fct_orders are the sums
    of its lines in fct_order_items. Compared order by order (line count and a sum of line
    number hashes; both tables are unique on order_id, line_number by their own tests), which
    keeps the work to one aggregation per table. -#}

with

silver_lines as (
    select
        order_id,
        count() as line_count,
        sum(cityHash64(line_number)) as line_numbers
    from {{ ref('order_items') }}
    where order_id in (select order_id from {{ ref('orders') }})
    group by order_id
),

fct_lines as (
    select
        order_id,
        count() as line_count,
        sum(cityHash64(line_number)) as line_numbers,
        sum(quantity) as item_quantity,
        sum(line_amount) as gross_line_amount
    from {{ ref('fct_order_items') }}
    group by order_id
),

fct_orders as (
    select order_id, line_count, item_quantity, gross_line_amount from {{ ref('fct_orders') }}
)

select
    if(silver_lines.order_id = '', fct_lines.order_id, silver_lines.order_id) as order_id,
    'lines differ between silver.order_items and fct_order_items' as problem
from silver_lines
full outer join fct_lines on silver_lines.order_id = fct_lines.order_id
where silver_lines.line_count != fct_lines.line_count
    or silver_lines.line_numbers != fct_lines.line_numbers

union all

select fct_orders.order_id, 'order totals differ from its lines' as problem
from fct_orders
{#- An order without lines gets 0s from the LEFT JOIN defaults, which is what it must have. #}
left join fct_lines on fct_orders.order_id = fct_lines.order_id
where fct_orders.line_count != fct_lines.line_count
    or fct_orders.item_quantity != fct_lines.item_quantity
    or fct_orders.gross_line_amount != fct_lines.gross_line_amount
