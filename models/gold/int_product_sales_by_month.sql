{{
    config(
        materialized='incremental',
        incremental_strategy='insert_overwrite',
        on_schema_change='fail',
        order_by='(order_month, product_id)',
        partition_by='toYYYYMM(order_month)',
        query_settings={'join_use_nulls': 0},
        post_hook="{{ drop_months_without_lines(\"product_id = ''\") }}",
    )
}}
{#- Sales and returns of each product per month of order date, the input of
    mart_product_performance. Kept by month: a run rebuilds only the months whose lines in
    fct_order_items changed since they were built (a new day, returns of a few weeks back, a
    product that arrived in the catalog) and swaps those month partitions in; the mart then sums
    one row per product and month instead of every line of history. An order is in one month,
    so distinct orders add up across months. Each month has a marker row (product_id '') with
    the fingerprint of the lines it was built from (see months_to_build), also when it has no
    sales. join_use_nulls = 0 (the engine’s default, pinned): an unmatched LEFT JOIN column
    holds its type’s default (0). -#}

with

{#- The months this run builds, with the count and fingerprint of their lines. #}
months as (
    {{ months_to_build(ref('fct_order_items'), "product_id = ''") }}
),

sold_lines as (
    select * from {{ ref('fct_order_items') }}
    where toStartOfMonth(order_date) in (select months.order_month from months)
        and (is_revenue_order or is_returned_order)
),

product_sales as (
    select
        toStartOfMonth(order_date) as order_month,
        product_id,
        sumIf(quantity, is_revenue_order) as units_sold,
        uniqExactIf(order_id, is_revenue_order) as revenue_orders,
        sumIf(line_amount_usd, is_revenue_order) as exact_revenue_usd,
        sumIf(quantity, is_returned_order) as units_returned,
        uniqExactIf(order_id, is_returned_order) as returned_orders,
        sumIf(line_amount_usd, is_returned_order) as exact_returned_revenue_usd
    from sold_lines
    group by order_month, product_id
),

month_markers as (
    select
        order_month,
        '' as product_id,
        toInt64(0) as units_sold,
        toUInt64(0) as revenue_orders,
        toDecimal128(0, 10) as exact_revenue_usd,
        toInt64(0) as units_returned,
        toUInt64(0) as returned_orders,
        toDecimal128(0, 10) as exact_returned_revenue_usd
    from months
),

final as (
    select
        sales_and_markers.order_month as order_month,
        sales_and_markers.product_id as product_id,
        toInt64(sales_and_markers.units_sold) as units_sold,
        toUInt64(sales_and_markers.revenue_orders) as revenue_orders,
        sales_and_markers.exact_revenue_usd as exact_revenue_usd,
        toInt64(sales_and_markers.units_returned) as units_returned,
        toUInt64(sales_and_markers.returned_orders) as returned_orders,
        sales_and_markers.exact_returned_revenue_usd as exact_returned_revenue_usd,
        months.source_lines as source_lines,
        months.source_fingerprint as source_fingerprint,
        months.source_ingested_at as _ingested_at
    from (
        select * from product_sales
        union all
        select * from month_markers
    ) as sales_and_markers
    left join months on sales_and_markers.order_month = months.order_month
)

select * from final
