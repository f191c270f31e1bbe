{{
    config(
        materialized='incremental',
        incremental_strategy='insert_overwrite',
        on_schema_change='fail',
        order_by='(order_month, product_a_id, product_b_id)',
        partition_by='toYYYYMM(order_month)',
        query_settings={'join_use_nulls': 0},
        post_hook="{{ drop_months_without_lines(\"product_a_id = ''\") }}",
    )
}}
{#- Market baskets per month of order date, the input of mart_product_affinity: for each pair
    of catalog products (product_a_id <= product_b_id) the revenue orders of the month that
    have both. A pair of a product with itself counts the orders that have the product. Each
    order’s products become a sorted array and pairs come from the array, not from a self-join
    of the lines. Kept by month like int_product_sales_by_month: a run rebuilds the months whose
    lines changed and swaps those partitions in. The month’s marker row (both ids '') counts its
    baskets (revenue orders with at least one catalog product) and carries the fingerprint of
    the lines it was built from. join_use_nulls = 0 (the engine’s default, pinned): an
    unmatched LEFT JOIN column holds its type’s default (0). -#}

with

{#- The months this run builds, with the count and fingerprint of their lines. #}
months as (
    {{ months_to_build(ref('fct_order_items'), "product_a_id = ''") }}
),

basket_lines as (
    select
        toStartOfMonth(order_date) as order_month,
        order_id,
        product_id
    from {{ ref('fct_order_items') }}
    where toStartOfMonth(order_date) in (select months.order_month from months)
        and is_revenue_order
        and product_id != '-1'
),

baskets as (
    select
        order_month,
        order_id,
        arraySort(groupUniqArray(product_id)) as basket
    from basket_lines
    group by order_month, order_id
),

pairs as (
    select
        order_month,
        pair.1 as product_a_id,
        pair.2 as product_b_id,
        count() as orders_together
    from baskets
    array join arrayFlatten(
        arrayMap(
            (product, position) -> arrayMap(
                other -> (product, other),
                arraySlice(basket, position)
            ),
            basket,
            arrayEnumerate(basket)
        )
    ) as pair
    group by order_month, product_a_id, product_b_id
),

{# Counted from the lines: `baskets` again would build every basket array a second time. -#}
month_baskets as (
    select
        order_month,
        uniqExact(order_id) as baskets
    from basket_lines
    group by order_month
),

month_markers as (
    select
        months.order_month as order_month,
        '' as product_a_id,
        '' as product_b_id,
        month_baskets.baskets as orders_together
    from months
    left join month_baskets on months.order_month = month_baskets.order_month
),

final as (
    select
        pairs_and_markers.order_month as order_month,
        pairs_and_markers.product_a_id as product_a_id,
        pairs_and_markers.product_b_id as product_b_id,
        toUInt64(pairs_and_markers.orders_together) as orders_together,
        months.source_lines as source_lines,
        months.source_fingerprint as source_fingerprint,
        months.source_ingested_at as _ingested_at
    from (
        select * from pairs
        union all
        select * from month_markers
    ) as pairs_and_markers
    left join months on pairs_and_markers.order_month = months.order_month
)

select * from final
