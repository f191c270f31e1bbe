{#- Helpers of the gold layer (SPEC section 7). -#}

{#- An amount in its currency times a USD rate, kept exact: 2 decimals of money times the 8
    decimals of the rate give Decimal(38, 10), nothing rounded. -#}
{% macro to_usd(amount, usd_per_unit) -%}
cast(cast({{ amount }} as Decimal(38, 2)) * {{ usd_per_unit }} as Decimal(38, 10))
{%- endmacro %}

{#- A USD figure rounded to cents (half away from zero) as Decimal(18, 2), for the marts, or
    Decimal(38, 2) with `wide`; NULL stays NULL. -#}
{% macro usd_cents(amount, wide=false) -%}
toDecimal{{ 128 if wide else 64 }}(round({{ amount }}, 2), 2)
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
{{ newest_ingested_at(this) }}
{%- endmacro %}

{#- The months a model kept by month of order date builds (insert_overwrite of
    `toYYYYMM(order_month)` partitions), as a select of literal rows (order_month, source_lines,
    source_fingerprint, source_ingested_at), so the run’s query reads only their partitions of
    the lines. Each month of the order lines (`relation`, fct_order_items) has a line count and
    a fingerprint of the line columns those models read: any line added, removed, moved to
    another month or changed in one of them changes it, whatever its `_ingested_at` says (a
    late product repoints a line without one). A full refresh builds every month; an
    incremental run the months whose count or fingerprint differs from the one the month was
    built from (kept in its marker row, `marker_filter`), new months, and months that lost all
    their lines (as a marker with no line, whose partition drop_months_without_lines drops). -#}
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
            {#- A month swapped in by a run that did not finish is not built: the rollback
                pre-hook (rollback_unfinished_run) removes the rows above the last finished run’s
                watermark, and it runs after this SQL has chosen its months. -#}
            {%- set built -%}
                select order_month, source_lines, source_fingerprint, toDateTime64(0, 3, 'UTC'), 2
                from {{ this }}
                where {{ marker_filter }} and source_lines > 0
                    and _ingested_at <= {{ finished_watermark() }}
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

{#- Post-hook of the models kept by month: drops the partition of every month that lost all its
    lines. months_to_build lists such a month, and the run swaps in its marker alone
    (insert_overwrite replaces only the partitions it writes, so a month without rows would
    keep its old ones), a row a full refresh would not hold. Every run drops what is left of
    them, so one stopped between the swap and the drop is mended by the next. -#}
{% macro drop_months_without_lines(marker_filter) -%}
    {%- if execute and load_relation(this) is not none -%}
        {%- for row in run_query("select distinct toYYYYMM(order_month) from " ~ this ~ " where "
                                 ~ marker_filter ~ " and source_lines = 0").rows -%}
            {%- do run_query("alter table " ~ this ~ " drop partition " ~ row[0]) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#- The incremental models mart_data_quality reads, as `schema.name` (their names in the
    incremental state table). -#}
{% macro data_quality_inputs() -%}
    {%- set inputs = [] -%}
    {%- for node_id in model.depends_on.nodes -%}
        {%- set node = graph.nodes.get(node_id) -%}
        {%- if node and node.config.materialized == 'incremental' -%}
            {%- do inputs.append(node.schema ~ '.' ~ node.alias) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(inputs | sort) }}
{%- endmacro %}

{#- What mart_data_quality’s table was built by, kept in its comment: the model’s SQL (its rules
    for the days to count again included; its Jinja comments left out, so that rewording them
    does not count every day again) and the tables of its incremental inputs (a full refresh of
    one of them builds a new table, with a new UUID). A table built by anything else has every
    day counted again, as a table model would. -#}
{% macro data_quality_version() -%}
    {%- set names = data_quality_inputs() -%}
    {%- set uuids = [] -%}
    {%- if execute and names -%}
        {%- for row in run_query("select toString(uuid) from system.tables where concat(database, '.', name) in ('"
                                 ~ names | join("', '") ~ "') order by database, name").rows -%}
            {%- do uuids.append(row[0]) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set code = modules.re.sub('[{]#.*?#[}]', '', model.raw_code, flags=modules.re.DOTALL) -%}
    {{ return(model.name ~ ' ' ~ local_md5(code) ~ ' ' ~ local_md5(uuids | join(','))) }}
{%- endmacro %}
