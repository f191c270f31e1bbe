{{
    config(
        materialized='table',
        engine='MergeTree()',
        order_by='(entity, metric, file_date, reason)',
        query_settings={'join_use_nulls': 0},
        post_hook="alter table {{ this }} modify comment '{{ data_quality_version() }}'",
    )
}}
{#- Data quality in long format: one row per entity, file date (partition date of the raw
    file the rows came from), metric and reason, with a count. Long, so a new check is new
    rows, not a new column, and "quarantined rows per entity and reason over all days" is
    one group by. Reconciliation metrics have a row for every entity and day, zero or not;
    the other checks only have rows where they found something. A snapshot of the current
    state of silver and gold, written as a new table every run. join_use_nulls = 0 (the
    engine's default, pinned): an unmatched LEFT JOIN column holds its type's default ('' or
    0), handled explicitly below.

    Only the entity days the new data can have changed are counted again (see
    `data_quality_days_to_count`); the rows of every other entity and day are copied from
    the table as it was. `_ingested_at` is the newest landing the table includes: the next
    run counts again what landed after it. A full refresh, a first build, or a table built
    by another version of this SQL (the table's comment) counts every day. -#}

{%- set entities = ['customers', 'products', 'orders', 'order_items', 'payments'] %}
{%- set days = data_quality_days_to_count(entities) %}

{#- A filter on a relation's `_file_date`: every day, or the days counted again for entity. -#}
{%- set on_days = {} %}
{%- for entity in entities %}
    {%- if days is none %}
        {%- do on_days.update({entity: 'true'}) %}
    {%- elif days[entity] %}
        {%- do on_days.update({entity: '_file_date in (' ~ days[entity] | join(', ') ~ ')'}) %}
    {%- else %}
        {%- do on_days.update({entity: 'false'}) %}
    {%- endif %}
{%- endfor %}

with

reconciliation as (
    select * from {{ ref('reconciliation') }}
),

{%- for entity in entities %}

quarantine_{{ entity }} as (
    select * from {{ ref('quarantine_' ~ entity) }}
),
{%- endfor %}

orders as (
    select * from {{ ref('orders') }}
),

order_items as (
    select * from {{ ref('order_items') }}
),

customers as (
    select * from {{ ref('customers') }}
),

products as (
    select * from {{ ref('products') }}
),

payments as (
    select * from {{ ref('payments') }}
),

fct_orders as (
    select * from {{ ref('fct_orders') }}
),

fct_payments as (
    select * from {{ ref('fct_payments') }}
),

{#- The entity days counted in this run. #}
reconciliation_to_count as (
    select *
    from reconciliation
    where
        {%- for entity in entities %}
        (entity = '{{ entity }}' and {{ on_days[entity] | replace('_file_date', 'file_date') }})
        {%- if not loop.last %} or{% endif %}
        {%- endfor %}
),

reconciliation_metrics as (
    select
        toString(entity) as entity,
        file_date,
        multiIf(
            metric_value.1 in ('bronze_rows', 'silver_rows'), 'volume',
            metric_value.1 = 'unbalanced', 'reconciliation',
            'deduplication'
        ) as check_category,
        metric_value.1 as metric,
        '' as reason,
        metric_value.2 as value
    from reconciliation_to_count
    array join [
        ('bronze_rows', bronze_rows),
        ('silver_rows', silver_rows),
        ('duplicate_rows', duplicate_rows),
        ('superseded_rows', superseded_rows),
        ('unbalanced', toUInt64(not is_balanced))
    ] as metric_value
),

quarantine_metrics as (
    {%- for entity in entities %}
    select
        '{{ entity }}' as entity,
        _file_date as file_date,
        'quarantine' as check_category,
        'quarantined_rows' as metric,
        toString(reason) as reason,
        count() as value
    from quarantine_{{ entity }}
    where {{ on_days[entity] }}
    group by file_date, reason
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

{#- The rows of the days counted. When those are some days only, the key sets the anti-joins
    below read are cut down to the keys those rows hold. -#}
lines_to_count as (
    select * from order_items
    where {{ on_days['order_items'] }}
),

{#- The latest reason each quarantined order key was quarantined for. -#}
quarantined_orders as (
    select
        trimBoth(order_id) as order_id,
        argMax(toString(reason), (_ingested_at, _row_number)) as reason
    from quarantine_orders
    where trimBoth(order_id) != ''
        {%- if days is not none %}
        and trimBoth(order_id) in (select order_id from lines_to_count)
        {%- endif %}
    group by order_id
),

{#- One pass over the lines: per file date and (for lines of quarantined orders) the order's
    quarantine reason, the lines without an order header and the lines without a product. -#}
line_counts as (
    select
        lines_to_count._file_date as file_date,
        {#- '' when the order was never quarantined. #}
        quarantined_orders.reason as order_quarantine_reason,
        countIf(
            lines_to_count.order_id not in (
                select order_id from orders
                {%- if days is not none %}
                where order_id in (select order_id from lines_to_count)
                {%- endif %}
            )
        ) as headerless_lines,
        countIf(
            lines_to_count.product_id not in (select product_id from products)
        ) as unknown_product_lines
    from lines_to_count
    left join quarantined_orders
        on lines_to_count.order_id = quarantined_orders.order_id
    group by file_date, order_quarantine_reason
),

line_metrics as (
    select
        'order_items' as entity,
        file_date,
        'integrity' as check_category,
        metric_value.1 as metric,
        metric_value.2 as reason,
        sum(metric_value.3) as value
    from line_counts
    array join [
        (
            if(order_quarantine_reason = '', 'orphan_lines', 'lines_of_quarantined_orders'),
            order_quarantine_reason,
            headerless_lines
        ),
        ('unknown_product_lines', '', unknown_product_lines)
    ] as metric_value
    group by file_date, metric, reason
    having value > 0
),

orders_to_count as (
    select * from orders
    where {{ on_days['orders'] }} and customer_id is not null
),

order_metrics as (
    select
        'orders' as entity,
        _file_date as file_date,
        'integrity' as check_category,
        'unknown_customer_orders' as metric,
        '' as reason,
        count() as value
    from orders_to_count
    where customer_id not in (
        select customer_id from customers
        {%- if days is not none %}
        where customer_id in (select customer_id from orders_to_count)
        {%- endif %}
    )
    group by file_date
),

{#- Payment checks of the orders of the payments days counted again: revenue orders by the
    order's file date, payments without order by the payment's. -#}
revenue_orders as (
    select * from fct_orders
    where is_revenue_order and {{ on_days['payments'] }}
),

captured_payments as (
    select * from fct_payments
    where is_captured
        {%- if days is not none %}
        and order_id in (select order_id from revenue_orders)
        {%- endif %}
),

{#- Revenue orders with captured payments that do not add up to the order total (lines - order
    discount + shipping) in the order's currency: lines lost to quarantine, prices off, a
    payment in another currency. -#}
payment_mismatches as (
    select any(revenue_orders._file_date) as file_date
    from revenue_orders
    inner join captured_payments
        on revenue_orders.order_id = captured_payments.order_id
    group by revenue_orders.order_id
    having sumIf(
        captured_payments.amount,
        captured_payments.currency_code = revenue_orders.currency_code
    ) != any(revenue_orders.order_total)
        or countIf(captured_payments.currency_code != revenue_orders.currency_code) > 0
),

{#- Revenue orders without any captured payment yet: cash on delivery on its way, or a payment
    export that has not arrived. -#}
uncaptured_revenue_orders as (
    select _file_date as file_date
    from revenue_orders
    where order_id not in (select order_id from captured_payments)
),

payments_to_count as (
    select * from payments
    where {{ on_days['payments'] }}
),

payment_metrics as (
    select
        'payments' as entity,
        file_date,
        'consistency' as check_category,
        'payment_mismatch_orders' as metric,
        '' as reason,
        count() as value
    from payment_mismatches
    group by file_date

    union all

    select
        'payments' as entity,
        file_date,
        'consistency' as check_category,
        'uncaptured_revenue_orders' as metric,
        '' as reason,
        count() as value
    from uncaptured_revenue_orders
    group by file_date

    union all

    select
        'payments' as entity,
        _file_date as file_date,
        'integrity' as check_category,
        'payments_without_order' as metric,
        '' as reason,
        count() as value
    from payments_to_count
    where order_id not in (
        select order_id from orders
        {%- if days is not none %}
        where order_id in (select order_id from payments_to_count)
        {%- endif %}
    )
    group by file_date
),

all_metrics as (
    select * from reconciliation_metrics
    union all
    select * from quarantine_metrics
    union all
    select * from line_metrics
    union all
    select * from order_metrics
    union all
    select * from payment_metrics
),

counted as (
    select
        toLowCardinality(entity) as entity,
        file_date,
        toLowCardinality(check_category) as check_category,
        toLowCardinality(metric) as metric,
        toLowCardinality(reason) as reason,
        toUInt64(value) as value
    from all_metrics
),

{%- if days is not none %}

{#- Every other entity and day as the table had it. #}
kept as (
    select entity, file_date, check_category, metric, reason, value
    from {{ this }}
    where not (
        {%- for entity in entities %}
        (entity = '{{ entity }}' and {{ on_days[entity] | replace('_file_date', 'file_date') }})
        {%- if not loop.last %} or{% endif %}
        {%- endfor %}
    )
),
{%- endif %}

newest_landing as (
    {{ newest_landing() }}
),

final as (
    select
        *,
        ifNull((select _ingested_at from newest_landing), toDateTime64(0, 3, 'UTC')) as _ingested_at
    from (
        select * from counted
        {%- if days is not none %}
        union all
        select * from kept
        {%- endif %}
    )
)

select * from final
