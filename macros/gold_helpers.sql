{#- Helpers of the gold layer (SPEC section 7). -#}

{#- An amount in its currency times a USD rate, kept exact: 2 decimals of money times the 8
    decimals of the rate give Decimal(38, 10), nothing rounded. -#}
{% macro to_usd(amount, usd_per_unit) -%}
cast(cast({{ amount }} as Decimal(38, 2)) * {{ usd_per_unit }} as Decimal(38, 10))
{%- endmacro %}

{#- A USD figure rounded to cents (half away from zero) as Decimal(18, 2), for the marts;
    NULL stays NULL. -#}
{% macro usd_cents(amount) -%}
toDecimal64(round({{ amount }}, 2), 2)
{%- endmacro %}

{#- The FX rate of each currency and month, from the seed, as the join input of an ASOF join on
    (currency_code, fx_month <= month of the event): the rate of that month, or of the latest
    earlier month when the seed does not reach it yet. The rate goes through its text form so
    that a seed typed Float64 gives the exact decimal (a float cast truncates 0.0633 to
    0.06329999). -#}
{% macro fx_rates() -%}
select
    toLowCardinality(toString(currency)) as currency_code,
    toDate(month) as fx_month,
    toDecimal64(toString(usd_per_unit), 8) as usd_per_unit
from {{ ref('fx_rates_monthly') }}
{%- endmacro %}

{#- The newest silver `_ingested_at` an incremental gold model already holds: silver rows
    ingested after it are what the run has to take into account. -#}
{% macro gold_watermark() -%}
(select max(_ingested_at) from {{ this }})
{%- endmacro %}

{#- The months a model kept by month of order date builds (insert_overwrite of
    `toYYYYMM(order_month)` partitions), as a select of literal rows (order_month, source_lines,
    source_fingerprint, source_ingested_at), so the run's query reads only their partitions of
    the lines. Each month of the order lines (`relation`, fct_order_items) has a line count and
    a fingerprint of the line columns those models read: any line added, removed, moved to
    another month or changed in one of them changes it, whatever its `_ingested_at` says (a
    late product repoints a line without one). A full refresh builds every month; an
    incremental run the months whose count or fingerprint differs from the one the month was
    built from (kept in its marker row, `marker_filter`), new months, and months that lost all
    their lines. -#}
{% macro months_to_build(relation, marker_filter) -%}
    {%- set source_months -%}
        select
            toStartOfMonth(order_date) as order_month,
            count() as source_lines,
            sum(cityHash64(
                order_id, line_number, product_id, quantity, line_amount_usd, is_revenue_order,
                is_returned_order
            )) as source_fingerprint,
            max(_ingested_at) as source_ingested_at
        from {{ relation }}
        group by order_month
    {%- endset -%}
    {%- set months = [] -%}
    {#- `dbt compile` or `docs generate` before the first build: no lines yet, no months. -#}
    {%- if execute and load_relation(relation) is not none -%}
        {%- if is_incremental() -%}
            {%- set built -%}
                select order_month, source_lines, source_fingerprint, toDateTime64(0, 3, 'UTC'), 2
                from {{ this }}
                where {{ marker_filter }} and source_lines > 0
            {%- endset -%}
            {%- set changed -%}
                select
                    order_month,
                    sumIf(lines, side = 1) as source_lines,
                    sumIf(fingerprint, side = 1) as source_fingerprint,
                    max(ingested_at) as source_ingested_at
                from (
                    select
                        order_month,
                        source_lines as lines,
                        source_fingerprint as fingerprint,
                        source_ingested_at as ingested_at,
                        1 as side
                    from ({{ source_months }})
                    union all
                    {{ built }}
                )
                group by order_month
                having count() = 1 or min((lines, fingerprint)) != max((lines, fingerprint))
            {%- endset -%}
        {%- else -%}
            {%- set changed = source_months -%}
        {%- endif -%}
        {%- set rows = run_query("select toString(order_month), toString(source_lines), "
                                 ~ "toString(source_fingerprint), toString(source_ingested_at) from ("
                                 ~ changed ~ ")").rows -%}
        {%- for row in rows -%}
            {%- do months.append("(toDate('" ~ row[0] ~ "'), " ~ row[1] ~ ", " ~ row[2] ~ ", toDateTime64('"
                                 ~ row[3] ~ "', 3, 'UTC'))") -%}
        {%- endfor -%}
    {%- endif -%}
select
    month.1 as order_month,
    toUInt64(month.2) as source_lines,
    toUInt64(month.3) as source_fingerprint,
    month.4 as source_ingested_at
from (
    select arrayJoin(
        cast([{{ months | join(', ') }}], 'Array(Tuple(Date, UInt64, UInt64, DateTime64(3, \'UTC\')))')
    ) as month
)
{%- endmacro %}

{#- The entity days mart_data_quality counts again, as {entity: [date literals]}, or none to
    count every day: a full refresh, a first build, or a table another version of the model's
    SQL built (the version is kept in the table's comment). What landed
    after the table's `_ingested_at` can change the counts of:
    - every entity day silver's reconciliation counted again (the days of the rows landed and
      the days a replaced version was on): its volume, quarantine and reconciliation rows, and
      for orders the payment checks of the orders that were on those days;
    - the order lines' days, for lines whose order landed (a header arrives, is quarantined) or
      whose product appeared for the first time;
    - the orders' days, for orders whose customer appeared for the first time;
    - the payment checks' days: the orders whose header, lines or payments landed (every order
      a payment with a new valid version was ever paid against), and the payments whose order
      landed. -#}
{% macro data_quality_days_to_count(entities) -%}
    {%- set versions = {} -%}
    {%- for entity in entities -%}
        {%- do versions.update({entity: ref(entity ~ '_versions')}) -%}
    {%- endfor -%}
    {%- set reconciliation, order_items, orders, payments, fct_orders = ref('reconciliation'), ref('order_items'),
        ref('orders'), ref('payments'), ref('fct_orders') -%}
    {%- if not execute or should_full_refresh() or load_relation(this) is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set built_by = run_query("select comment from system.tables where database = '" ~ this.schema
                                 ~ "' and name = '" ~ this.identifier ~ "'").rows -%}
    {%- if built_by | length == 0 or built_by[0][0] != data_quality_version() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set included = "(select max(_ingested_at) from " ~ this ~ ")" -%}
    {%- set valid = "not _is_duplicate and reason = ''" -%}
    {#- Every version, quarantined or not: `order_id` is the trimmed raw key, as the quarantine
        checks read it. -#}
    {%- set landed_orders -%}
        select order_id from {{ versions['orders'] }} where _ingested_at > {{ included }}
    {%- endset -%}
    {%- set first_seen -%}
        {#- keys whose first valid version landed after the table: {0} key, {1} versions -#}
        select {0} from {1}
        where {0} in (select {0} from {1} where _ingested_at > {2} and {3}) and {3}
        group by {0}
        having min(_ingested_at) > {2}
    {%- endset -%}
    {%- set query -%}
        select toString(entity) as entity, file_date as day
        from {{ reconciliation }}
        where _ingested_at > {{ included }}
        union distinct
        select 'payments', file_date
        from {{ reconciliation }}
        where entity = 'orders' and _ingested_at > {{ included }}
        union distinct
        select 'order_items', _file_date
        from {{ order_items }}
        where order_id in ({{ landed_orders }})
            or product_id in ({{ first_seen.format('product_id', versions['products'], included, valid) }})
        union distinct
        select 'orders', _file_date
        from {{ orders }}
        where customer_id in ({{ first_seen.format('customer_id', versions['customers'], included, valid) }})
        union distinct
        select 'payments', _file_date
        from {{ fct_orders }}
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
        from {{ payments }}
        where order_id in ({{ landed_orders }})
    {%- endset -%}
    {%- set days = {} -%}
    {%- for entity in entities -%}
        {%- do days.update({entity: []}) -%}
    {%- endfor -%}
    {%- for row in run_query("select entity, toString(day) from (" ~ query ~ ") order by entity, day").rows -%}
        {%- do days[row[0]].append("toDate('" ~ row[1] ~ "')") -%}
    {%- endfor -%}
    {{ return(days) }}
{%- endmacro %}

{#- The version of mart_data_quality's SQL, kept in its table's comment: a table built by other
    SQL has its days counted again in full, as a table model would. -#}
{% macro data_quality_version() -%}
{{ model.name }} {{ local_md5(model.raw_code) }}
{%- endmacro %}
