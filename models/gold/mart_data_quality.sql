{{
    config(
        materialized='table',
        order_by='(entity, metric, file_date, reason)',
        query_settings={'join_use_nulls': 0},
        post_hook="alter table {{ this }} modify comment '{{ data_quality_version() }}'",
        meta={'copies_its_last_build': true},
    )
}}
{#- Data quality in long format: one row per entity, file date (partition date of the raw
    file the rows came from), metric and reason, with a count. Long, so a new check is new
    rows, not a new column, and "quarantined rows per entity and reason over all days" is
    one group by. Reconciliation metrics have a row for every entity and day, zero or not;
    the other checks only have rows where they found something. A snapshot of the current
    state of silver and gold, written as a new table every run. join_use_nulls = 0 (the
    engine’s default, pinned): an unmatched LEFT JOIN column holds its type’s default ('' or
    0), handled explicitly below.

    Only the entity days that data landed since the last build can have changed are counted
    again; the rows of every other entity and day are copied from the table as it was.
    `_ingested_at` is the landing up to which every input of the table had been built (see
    `inputs_built`): the next run counts again what landed after it. Built from inputs behind
    the newest landing, it stops instead (refuse_stale_inputs: the copied rows would not be
    counted again). A full refresh, a first build, and a table
    built by other SQL or from other input tables (a full refresh of one of them;
    `data_quality_version`, kept in the table’s comment) count every day. -#}

{%- set entities = ['customers', 'products', 'orders', 'order_items', 'payments'] %}

{#- The entity days to count again, {entity: [date literals]}, or none for every day; found
    when the model is compiled and inlined, so the statement reads only those days. Relative
    to the table’s `_ingested_at`, what landed after it can change the counts of:
    - every entity day silver’s reconciliation counted again (the days of the rows landed and
      the days a replaced version was on): its volume, quarantine and reconciliation rows, and
      for orders the payment checks of the orders that were on those days;
    - the order lines’ days, for lines whose order landed (a header arrives, is quarantined) or
      whose product appeared for the first time;
    - the orders’ days, for orders whose customer appeared for the first time;
    - the payment checks’ days: the orders whose header, lines or payments landed (every order
      a payment with a new valid version was ever paid against), and the payments whose order
      landed. -#}
{%- set versions = {} %}
{%- for entity in entities %}
    {%- do versions.update({entity: ref(entity ~ '_versions')}) %}
{%- endfor %}
{%- set days = none %}
{%- if execute and not should_full_refresh() and load_relation(this) is not none %}
    {%- set built_by = run_query("select comment from system.tables where database = '" ~ this.schema
                                 ~ "' and name = '" ~ this.identifier ~ "'").rows %}
    {%- if built_by | length > 0 and built_by[0][0] == data_quality_version() %}
        {%- set included = "(select max(_ingested_at) from " ~ this ~ ")" %}
        {%- set valid = "not _is_duplicate and reason = ''" %}
        {#- Every version, quarantined or not: `order_id` is the trimmed raw key, as the
            quarantine checks read it. #}
        {%- set landed_orders -%}
            select order_id from {{ versions['orders'] }} where _ingested_at > {{ included }}
        {%- endset %}
        {#- The days of an entity’s rows whose `key` had its first valid version land after the
            table. Such a key changes only the days on which the table counted its rows as
            unknown (`metric`), or rows the table did not hold yet, whose days reconciliation
            counts again: a row that was there is unknown in it unless its key was known at that
            build already, and then its day is right as it is. So those rows are looked for on
            those days only, which the `_file_date` index finds, instead of in every row
            (order_items’ 9M on ten years). #}
        {%- set first_seen_days -%}
            select '{entity}', _file_date
            from {rows}
            where _file_date in (select file_date from {this} where entity = '{entity}' and metric = '{metric}')
                and {key} in (
                    select {key} from {versions}
                    where {key} in (select {key} from {versions} where _ingested_at > {included} and {valid})
                        and {valid}
                    group by {key}
                    having min(_ingested_at) > {included}
                )
        {%- endset %}
        {%- set to_count -%}
            select toString(entity) as entity, file_date as day
            from {{ ref('reconciliation') }}
            where _ingested_at > {{ included }}
            union distinct
            select 'payments', file_date
            from {{ ref('reconciliation') }}
            where entity = 'orders' and _ingested_at > {{ included }}
            union distinct
            select 'order_items', _file_date
            from {{ ref('order_items') }}
            where order_id in ({{ landed_orders }})
            union distinct
            {{ first_seen_days.format(entity='order_items', rows=ref('order_items'), metric='unknown_product_lines',
                                      key='product_id', versions=versions['products'], this=this,
                                      included=included, valid=valid) }}
            union distinct
            {{ first_seen_days.format(entity='orders', rows=ref('orders'), metric='unknown_customer_orders',
                                      key='customer_id', versions=versions['customers'], this=this,
                                      included=included, valid=valid) }}
            union distinct
            select 'payments', _file_date
            from {{ ref('fct_orders') }}
            where order_id in (
                {{ landed_orders }}
                union distinct
                select order_id from {{ versions['order_items'] }} where _ingested_at > {{ included }}
                union distinct
                select order_id from {{ versions['payments'] }}
                where {{ valid }} and payment_id in (
                    select payment_id from {{ versions['payments'] }}
                    where _ingested_at > {{ included }} and {{ valid }}
                )
            )
            union distinct
            select 'payments', _file_date
            from {{ ref('payments') }}
            where order_id in ({{ landed_orders }})
        {%- endset %}
        {%- set days = {} %}
        {%- for entity in entities %}
            {%- do days.update({entity: []}) %}
        {%- endfor %}
        {%- for row in run_query("select entity, toString(day) from (" ~ to_count ~ ") order by entity, day").rows %}
            {%- do days[row[0]].append("toDate('" ~ row[1] ~ "')") %}
        {%- endfor %}
    {%- endif %}
{%- endif %}

{#- A filter on a relation’s `_file_date`: every day, or the days counted again for entity. -#}
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

{#- The same days as a filter on rows of (entity, file_date): the rows counted in this run; the
    others are kept. -#}
{%- set counted_pairs = [] %}
{%- for entity in entities %}
    {%- do counted_pairs.append("(entity = '" ~ entity ~ "' and "
                                ~ on_days[entity] | replace('_file_date', 'file_date') ~ ")") %}
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

{# The entity days counted in this run. -#}
reconciliation_to_count as (
    select *
    from reconciliation
    where {{ counted_pairs | join(' or ') }}
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

{# The rows of the days counted. When those are some days only, the key sets the anti-joins
    below read are cut down to the keys those rows hold. -#}
lines_to_count as (
    select * from order_items
    where {{ on_days['order_items'] }}
),

{# The latest reason each quarantined order key was quarantined for. -#}
quarantined_orders as (
    select
        {{ trim_space('order_id') }} as order_id,
        argMax(toString(reason), {{ version_order(has_updated_at=false) }}) as reason
    from quarantine_orders
    where {{ trim_space('order_id') }} != ''
        {%- if days is not none %}
        and {{ trim_space('order_id') }} in (select lines_to_count.order_id from lines_to_count)
        {%- endif %}
    group by order_id
),

{# One pass over the lines: per file date and (for lines of quarantined orders) the order’s
    quarantine reason, the lines without an order header and the lines without a product. -#}
line_counts as (
    select
        lines_to_count._file_date as file_date,
        {#- '' when the order was never quarantined. #}
        quarantined_orders.reason as order_quarantine_reason,
        countIf(
            lines_to_count.order_id not in (
                select orders.order_id from orders
                {%- if days is not none %}
                where orders.order_id in (select lines_to_count.order_id from lines_to_count)
                {%- endif %}
            )
        ) as headerless_lines,
        countIf(
            lines_to_count.product_id not in (select products.product_id from products)
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
        select customers.customer_id from customers
        {%- if days is not none %}
        where customers.customer_id in (select orders_to_count.customer_id from orders_to_count)
        {%- endif %}
    )
    group by file_date
),

{# Payment checks of the orders of the payments days counted again: revenue orders by the
    order’s file date, payments without order by the payment’s. -#}
revenue_orders as (
    select * from fct_orders
    where is_revenue_order and {{ on_days['payments'] }}
),

captured_payments as (
    select * from fct_payments
    where is_captured
        {%- if days is not none %}
        and order_id in (select revenue_orders.order_id from revenue_orders)
        {%- endif %}
),

{# Revenue orders with captured payments that do not add up to the order total (lines - order
    discount + shipping) in the order’s currency: lines lost to quarantine, prices off, a
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

{# Revenue orders without any captured payment yet: cash on delivery on its way, or a payment
    export that has not arrived. An order with nothing to pay (discounted to 0) never gets one. -#}
uncaptured_revenue_orders as (
    select _file_date as file_date
    from revenue_orders
    where order_total > 0
        and order_id not in (select captured_payments.order_id from captured_payments)
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
        select orders.order_id from orders
        {%- if days is not none %}
        where orders.order_id in (select payments_to_count.order_id from payments_to_count)
        {%- endif %}
    )
    group by file_date
),

{# Raw files rejected whole (SPEC section 5): their rows never reached bronze, so no other
    metric sees them. A file counts while its latest entry in the ingest log is a rejection: once
    fixed and landed, or logged removed from the raw directory, it no longer does. Files whose name gives no entity
    or day are in the log only. Counted from the log every run (a row per file). -#}
landing_metrics as (
    select
        latest_entries.entity as entity,
        assumeNotNull(latest_entries.file_date) as file_date,
        'landing' as check_category,
        'rejected_files' as metric,
        latest_entries.reason as reason,
        count() as value
    from (
        select
            argMax(ingest_log.entity, ingest_log.finished_at) as entity,
            argMax(ingest_log.file_date, ingest_log.finished_at) as file_date,
            argMax(ingest_log.status, ingest_log.finished_at) as status,
            argMax(ingest_log.reason, ingest_log.finished_at) as reason
        from {{ source('bronze', 'ingest_log') }} as ingest_log
        group by ingest_log.file_path
    ) as latest_entries
    where
        latest_entries.status = 'rejected'
        and latest_entries.file_date is not null
        and latest_entries.entity in (
            '{{ entities | join("', '") }}'
        )
    group by latest_entries.entity, latest_entries.file_date, latest_entries.reason
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
    union all
    select * from landing_metrics
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

{# Every other entity and day as the table had it (rejected files are counted anew). -#}
kept as (
    select
        entity,
        file_date,
        check_category,
        metric,
        reason,
        value
    from {{ this }}
    where not ({{ counted_pairs | join(' or ') }}) and metric != 'rejected_files'
),
{%- endif %}

{# The landing up to which every incremental input had been built: the newest landing the
    versions hold or, if earlier, the end of the last run of the input built least recently
    (1970 if one has none). A build of only some models leaves it behind, and the next run
    counts again what landed since. -#}
{%- set inputs = data_quality_inputs() -%}
newest_landing as (
    {{ newest_landing() }}
),

inputs_built as (
    select if(uniqExact(model) = {{ inputs | length }}, min(built_at), toDateTime64(0, 3, 'UTC')) as built_at
    from (
        select
            model,
            max(recorded_at) as built_at
        from {{ incremental_state_table() }}
        where model in ('{{ inputs | join("', '") }}')
        group by model
    )
),

final as (
    select
        *,
        coalesce(
            least(
                (select newest_landing._ingested_at from newest_landing),
                (select inputs_built.built_at from inputs_built)
            ),
            toDateTime64(0, 3, 'UTC')
        ) as _ingested_at
    from (
        select * from counted
        {%- if days is not none %}
        union all
        select * from kept
        {%- endif %}
    )
)

select * from final
