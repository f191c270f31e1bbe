{#- A line whose product, or an order whose customer, reached its dimension after it maps to the
    dimension’s row from then on, never to the unknown member for good: the incremental runs of
    the facts look such rows up again when the dimension row lands. Reads the facts’ rows
    under the unknown member only (a few on a day of the 10x history). -#}

{#- Shown in Dagster as a check of fct_order_items (it reads several models). -#}
{{ config(meta={'dagster': {'ref': {'name': 'fct_order_items'}}}) }}

select
    'fct_order_items' as fact,
    concat(order_id, ' line ', toString(line_number)) as fact_row,
    source_product_id as member_id,
    'product in dim_products, line still on the unknown product' as problem
from {{ ref('fct_order_items') }}
where product_id = '-1'
    and source_product_id in (select product_id from {{ ref('dim_products') }} where not is_unknown)

union all

select
    'fct_orders' as fact,
    order_id as fact_row,
    assumeNotNull(customer_id) as member_id,
    'customer in dim_customers, order still on the unknown customer' as problem
from {{ ref('fct_orders') }}
where customer_key = '-1' and customer_id is not null
    and customer_id in (select customer_id from {{ ref('dim_customers') }} where not is_unknown)
