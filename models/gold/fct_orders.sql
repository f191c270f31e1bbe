{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert',
        on_schema_change='fail',
        unique_key='order_id',
        order_by='(order_date, order_id)',
        partition_by='toYear(order_date)',
        settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
        query_settings={'join_use_nulls': 0, 'lightweight_delete_mode': 'lightweight_update'},
    )
}}
{#- One row per order header in silver, with its line totals, USD amounts and revenue flags.
    Incremental, delete_insert on order_id: a run recomputes only the orders touched since
    the last one (see the gold_incremental_facts doc). Sorted by date, partitioned by year:
    the marts read it by order date. join_use_nulls = 0 (the engine’s default, pinned): an
    unmatched LEFT JOIN column holds its type’s default ('' or 0), handled explicitly below. -#}

with

orders as (
    select * from {{ ref('orders') }}
),

order_items as (
    select * from {{ ref('order_items') }}
),

customer_versions as (
    select
        customer_key,
        customer_id,
        valid_from,
        _ingested_at
    from {{ ref('dim_customers') }}
    where not is_unknown
),

order_statuses as (
    select * from {{ ref('order_statuses') }}
),

fx_rates as (
    {{ fx_rates() }}
),

{%- if is_incremental() %}

{# Orders whose header, lines or customer versions landed since the last run. -#}
changed_orders as (
    select order_id from orders
    where _ingested_at > {{ gold_watermark() }}
    union distinct
    select order_id from order_items
    where _ingested_at > {{ gold_watermark() }}
    union distinct
    select order_id from orders
    where customer_id in (
        select customer_versions.customer_id from customer_versions
        where customer_versions._ingested_at > {{ gold_watermark() }}
    )
),

orders_in_scope as (
    select * from orders
    where order_id in (select changed_orders.order_id from changed_orders)
),

{%- else %}

orders_in_scope as (
    select * from orders
),

{%- endif %}

order_lines as (
    select
        order_id,
        count() as line_count,
        sum(quantity) as item_quantity,
        sum(line_amount) as gross_line_amount,
        max(_ingested_at) as lines_ingested_at
    from order_items
    {%- if is_incremental() %}
    where order_id in (select orders_in_scope.order_id from orders_in_scope)
    {%- endif %}
    group by order_id
),

{# The customer version valid when the order was placed; when the order is older than the
    customer’s first known version (the CRM sent the customer late), that first version. -#}
order_customers as (
    select
        orders_in_scope.order_id as order_id,
        countIf(customer_versions.valid_from <= orders_in_scope.order_ts) > 0 as has_version_before,
        if(
            has_version_before,
            argMaxIf(
                customer_versions.customer_key,
                customer_versions.valid_from,
                customer_versions.valid_from <= orders_in_scope.order_ts
            ),
            argMin(customer_versions.customer_key, customer_versions.valid_from)
        ) as customer_key,
        if(
            has_version_before,
            argMaxIf(
                customer_versions._ingested_at,
                customer_versions.valid_from,
                customer_versions.valid_from <= orders_in_scope.order_ts
            ),
            argMin(customer_versions._ingested_at, customer_versions.valid_from)
        ) as customer_ingested_at
    from orders_in_scope
    inner join customer_versions
        on orders_in_scope.customer_id = customer_versions.customer_id
    group by orders_in_scope.order_id
),

joined as (
    select
        orders_in_scope.order_id as order_id,
        if(order_customers.customer_key = '', '-1', order_customers.customer_key) as customer_key,
        orders_in_scope.customer_id as customer_id,
        toBool(orders_in_scope.is_guest) as is_guest,
        orders_in_scope.order_ts as order_ts,
        orders_in_scope.order_date as order_date,
        orders_in_scope.order_status as order_status,
        orders_in_scope.channel as channel,
        orders_in_scope.shipping_country_code as shipping_country_code,
        orders_in_scope.currency_code as currency_code,
        orders_in_scope.coupon_code as coupon_code,
        {#- An order without lines gets 0 lines, 0 items, 0 amount. #}
        order_lines.line_count as line_count,
        order_lines.item_quantity as item_quantity,
        cast(order_lines.gross_line_amount as Decimal(18, 2)) as gross_line_amount,
        orders_in_scope.order_discount as order_discount,
        orders_in_scope.shipping_fee as shipping_fee,
        {#- A currency without any rate gets 0, which the tests on usd_per_unit report. #}
        fx_rates.fx_month as fx_month,
        fx_rates.usd_per_unit as usd_per_unit,
        orders_in_scope.order_status in (
            select order_statuses.order_status from order_statuses
            where toBool(order_statuses.is_revenue)
        ) as has_revenue_status,
        orders_in_scope.order_status in (
            select order_statuses.order_status from order_statuses
            where toBool(order_statuses.is_returned)
        ) as has_returned_status,
        orders_in_scope.order_status in (
            select order_statuses.order_status from order_statuses
            where toBool(order_statuses.is_cancelled)
        ) as has_cancelled_status,
        {#- Unmatched: 1970-01-01, never the greatest. #}
        greatest(
            orders_in_scope._ingested_at,
            order_lines.lines_ingested_at,
            order_customers.customer_ingested_at
        ) as ingested_at,
        orders_in_scope._source_file as source_file,
        orders_in_scope._file_date as file_date
    from orders_in_scope
    left join order_lines
        on orders_in_scope.order_id = order_lines.order_id
    left join order_customers
        on orders_in_scope.order_id = order_customers.order_id
    asof left join fx_rates
        on orders_in_scope.currency_code = fx_rates.currency_code
        and toStartOfMonth(orders_in_scope.order_ts) >= fx_rates.fx_month
),

amounts as (
    select
        *,
        gross_line_amount - order_discount as net_revenue,
        gross_line_amount - order_discount + shipping_fee as order_total,
        cast(has_revenue_status and line_count > 0 as Bool) as is_revenue_order,
        cast(has_returned_status and line_count > 0 as Bool) as is_returned_order,
        cast(has_cancelled_status as Bool) as is_cancelled_order
    from joined
),

final as (
    select
        order_id,
        customer_key,
        customer_id,
        is_guest,
        order_ts,
        order_date,
        order_status,
        channel,
        shipping_country_code,
        currency_code,
        coupon_code,
        toUInt32(line_count) as line_count,
        toInt64(item_quantity) as item_quantity,
        gross_line_amount,
        order_discount,
        net_revenue,
        shipping_fee,
        order_total,
        fx_month,
        usd_per_unit,
        {{ to_usd('gross_line_amount', 'usd_per_unit') }} as gross_line_amount_usd,
        {{ to_usd('net_revenue', 'usd_per_unit') }} as net_revenue_usd,
        {{ to_usd('shipping_fee', 'usd_per_unit') }} as shipping_fee_usd,
        is_revenue_order,
        is_returned_order,
        is_cancelled_order,
        source_file as _source_file,
        file_date as _file_date,
        ingested_at as _ingested_at
    from amounts
)

select * from final
