{{
    config(
        materialized='table',
        order_by='(product_id)',
        query_settings={'join_use_nulls': 0},
    )
}}
{#- One row per product of dim_products (the unknown product included, so its sales are
    visible): units, line revenue, returns and margin over all history. A table rebuilt every
    run from the monthly sales of int_product_sales_by_month; products are few. join_use_nulls
    = 0 (the engine’s default, pinned): an unmatched LEFT JOIN column holds its type’s default
    ('' or 0), handled explicitly below. -#}

with

products as (
    select * from {{ ref('dim_products') }}
),

{# Products sold per month, summed; an order is in one month, so its orders add up. -#}
product_sales as (
    select
        product_id,
        sum(units_sold) as units_sold,
        sum(revenue_orders) as revenue_orders,
        sum(exact_revenue_usd) as exact_revenue_usd,
        sum(units_returned) as units_returned,
        sum(returned_orders) as returned_orders,
        sum(exact_returned_revenue_usd) as exact_returned_revenue_usd
    from {{ ref('int_product_sales_by_month') }}
    where product_id != ''
    group by product_id
),

joined as (
    select
        products.product_id as product_id,
        products.product_name as product_name,
        products.category as category,
        products.subcategory as subcategory,
        products.brand as brand,
        products.is_active as is_active,
        products.is_unknown as is_unknown,
        products.unit_cost_usd as unit_cost_usd,
        {#- A product that never sold: 0 everywhere. #}
        product_sales.units_sold as units_sold,
        product_sales.revenue_orders as revenue_orders,
        product_sales.exact_revenue_usd as exact_revenue_usd,
        product_sales.units_returned as units_returned,
        product_sales.returned_orders as returned_orders,
        product_sales.exact_returned_revenue_usd as exact_returned_revenue_usd
    from products
    left join product_sales
        on products.product_id = product_sales.product_id
),

with_cost as (
    select
        *,
        if(
            is_unknown,
            null,
            cast(units_sold as Decimal(38, 2)) * unit_cost_usd
        ) as exact_cost_usd
    from joined
),

final as (
    select
        product_id,
        product_name,
        category,
        subcategory,
        brand,
        is_active,
        units_sold,
        revenue_orders,
        {{ usd_cents('exact_revenue_usd') }} as revenue_usd,
        units_returned,
        returned_orders,
        {{ usd_cents('exact_returned_revenue_usd') }} as returned_revenue_usd,
        if(
            units_sold + units_returned > 0,
            units_returned / (units_sold + units_returned),
            null
        ) as return_rate,
        {#- Decimal(38, 2): units sold times a cost below a billion can pass Decimal(18, 2)
            (a barcode pasted into a cost, a quantity of millions at a cent). #}
        {{ usd_cents('exact_cost_usd', wide=true) }} as cost_usd,
        {{ usd_cents('exact_revenue_usd - exact_cost_usd', wide=true) }} as margin_usd,
        if(
            exact_revenue_usd > 0 and exact_cost_usd is not null,
            toFloat64(exact_revenue_usd - exact_cost_usd) / toFloat64(exact_revenue_usd),
            null
        ) as margin_rate
    from with_cost
)

select * from final
