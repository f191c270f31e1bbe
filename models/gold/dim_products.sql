{{
    config(
        materialized='table',
        order_by='(product_id)',
        query_settings={'join_use_nulls': 0},
    )
}}
{#- The catalog as it is now (type 1: one row per product, latest valid version) with the
    names of its category taxonomy, plus the unknown member `-1` for order lines whose
    product is not in the catalog yet. The catalog is small next to the facts: a table
    rebuilt every run. join_use_nulls = 0 (the engine’s default, pinned): an unmatched LEFT
    JOIN column holds its type’s default ('' or 0), handled explicitly below. -#}

with

products as (
    select * from {{ ref('products') }}
),

product_categories as (
    select * from {{ ref('product_categories') }}
),

{# A category’s name does not depend on the subcategory: a product whose subcategory is not in
    the taxonomy still gets its category’s name. -#}
category_names as (
    select
        category,
        any(category_name) as category_name
    from product_categories
    group by category
),

known_products as (
    select
        products.product_id as product_id,
        products.sku as sku,
        products.product_name as product_name,
        products.category as category,
        if(
            category_names.category_name = '',
            toString(products.category),
            toString(category_names.category_name)
        ) as category_name,
        products.subcategory as subcategory,
        if(
            product_categories.subcategory_name = '',
            toString(products.subcategory),
            toString(product_categories.subcategory_name)
        ) as subcategory_name,
        products.brand as brand,
        products.unit_cost_usd as unit_cost_usd,
        products.list_price as list_price,
        products.currency_code as currency_code,
        toBool(products.is_active) as is_active,
        products.updated_at as updated_at,
        false as is_unknown
    from products
    left join category_names
        on products.category = category_names.category
    left join product_categories
        on products.category = product_categories.category
        and products.subcategory = product_categories.subcategory
),

unknown_member as (
    select
        '-1' as product_id,
        '-1' as sku,
        'Unknown product' as product_name,
        toLowCardinality('unknown') as category,
        'Unknown' as category_name,
        toLowCardinality('unknown') as subcategory,
        'Unknown' as subcategory_name,
        'unknown' as brand,
        toDecimal64(0, 2) as unit_cost_usd,
        toDecimal64(0, 2) as list_price,
        toLowCardinality('XXX') as currency_code,
        false as is_active,
        toDateTime64(0, 3, 'UTC') as updated_at,
        true as is_unknown
),

final as (
    select * from known_products
    union all
    select * from unknown_member
)

select * from final
