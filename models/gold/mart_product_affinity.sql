{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(product_a_id, product_b_id)',
    )
}}
{#- Pairs of distinct catalog products bought in the same revenue order (market-basket
    analysis). Each order's products become a sorted array and pairs come from the array,
    not from a self-join of the lines. Only pairs bought together at least twice are kept,
    so the table stays small; rebuilt every run. -#}

{%- set min_orders_together = 2 %}

with

basket_lines as (
    select order_id, product_id
    from {{ ref('fct_order_items') }}
    where is_revenue_order and product_id != '-1'
),

products as (
    select product_id, product_name from {{ ref('dim_products') }}
),

baskets as (
    select
        order_id,
        arraySort(groupUniqArray(product_id)) as basket
    from basket_lines
    group by order_id
),

basket_count as (
    select count() as total_orders from baskets
),

product_orders as (
    select
        product_id,
        count() as orders_with_product
    from baskets
    array join basket as product_id
    group by product_id
),

pairs as (
    select
        pair.1 as product_a_id,
        pair.2 as product_b_id,
        count() as orders_together
    from baskets
    array join arrayFlatten(
        arrayMap(
            (product, position) -> arrayMap(
                other -> (product, other),
                arraySlice(basket, position + 1)
            ),
            basket,
            arrayEnumerate(basket)
        )
    ) as pair
    group by product_a_id, product_b_id
    having orders_together >= {{ min_orders_together }}
),

final as (
    select
        pairs.product_a_id as product_a_id,
        product_a.product_name as product_a_name,
        pairs.product_b_id as product_b_id,
        product_b.product_name as product_b_name,
        pairs.orders_together as orders_together,
        orders_a.orders_with_product as orders_with_a,
        orders_b.orders_with_product as orders_with_b,
        basket_count.total_orders as total_orders,
        orders_together / total_orders as support,
        orders_together / orders_with_a as confidence_a_to_b,
        orders_together / orders_with_b as confidence_b_to_a,
        confidence_a_to_b / (orders_with_b / total_orders) as lift
    from pairs
    cross join basket_count
    inner join product_orders as orders_a on pairs.product_a_id = orders_a.product_id
    inner join product_orders as orders_b on pairs.product_b_id = orders_b.product_id
    inner join products as product_a on pairs.product_a_id = product_a.product_id
    inner join products as product_b on pairs.product_b_id = product_b.product_id
)

select * from final
