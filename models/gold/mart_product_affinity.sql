{{
    config(
        materialized='table',
        order_by='(product_a_id, product_b_id)',
    )
}}
{#- Pairs of distinct catalog products bought in the same revenue order (market-basket
    analysis), summed over the months of int_product_pairs_by_month, which keeps the pair
    counts of each month. Every pair bought together is kept; the dbt var
    `affinity_min_orders_together` (1 by default) raises the floor for a smaller table. Rebuilt
    every run. -#}

{#- Whole numbers only: `| int` alone reads 2.5 as 2 and `abc` as 0. #}
{%- set given = var('affinity_min_orders_together') | string | trim %}
{%- set min_orders_together = given | int %}
{%- if not given.isdigit() or min_orders_together < 1 %}
    {{ exceptions.raise_compiler_error("var affinity_min_orders_together must be a whole number of 1 or more, got "
                                       ~ var('affinity_min_orders_together')) }}
{%- endif %}

with

monthly_pairs as (
    select * from {{ ref('int_product_pairs_by_month') }}
),

products as (
    select
        product_id,
        product_name
    from {{ ref('dim_products') }}
),

{# Marker rows ('', ''): the baskets of each month. -#}
basket_count as (
    select sum(orders_together) as total_orders
    from monthly_pairs
    where product_a_id = ''
),

{# A product paired with itself: the orders that have it. -#}
product_orders as (
    select
        product_a_id as product_id,
        sum(orders_together) as orders_with_product
    from monthly_pairs
    where product_a_id = product_b_id and product_a_id != ''
    group by product_id
),

pairs as (
    select
        product_a_id,
        product_b_id,
        sum(orders_together) as orders_together
    from monthly_pairs
    where product_a_id < product_b_id
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
