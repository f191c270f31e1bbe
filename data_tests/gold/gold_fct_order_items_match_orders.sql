{#- Lines and orders agree: fct_order_items holds exactly the silver lines whose header is in
    fct_orders (which holds exactly the silver headers: gold_fct_orders_match_silver), and each
    order's line count, quantity and gross amount in fct_orders are the sums of its lines in
    fct_order_items. Compared order by order (line count and a sum of line number hashes; both
    line tables are unique on order_id, line_number by their own tests) in one aggregation over
    the three tables, so no table is held in a join or a set.

    The aggregation groups by a 64-bit hash of order_id, not the id itself: carrying the
    strings through it cost half as much CPU again (the 10x day: 5.0-7.0 CPU seconds against
    3.8-4.5 s). The ids of the failing orders are looked up after it, by their hash
    (`failing_ids`). Two orders sharing a hash (about one chance in two million on 4 million
    orders) are checked as one: every check adds up over the orders of a group, so a wrong
    order still fails; at worst an order without a header beside one with a header reports
    both. -#}

{#- Shown in Dagster as a check of fct_order_items (it reads several models). -#}
{{ config(meta={'dagster': {'ref': {'name': 'fct_order_items'}}}) }}

with

order_rows as (
    select
        cityHash64(order_id) as hashed_key,
        'silver_line' as side,
        cityHash64(line_number) as line_hash,
        toInt64(0) as quantity,
        toDecimal128(0, 2) as amount
    from {{ ref('order_items') }}

    union all

    select
        cityHash64(order_id) as hashed_key,
        'fct_line' as side,
        cityHash64(line_number) as line_hash,
        toInt64(quantity) as quantity,
        toDecimal128(line_amount, 2) as amount
    from {{ ref('fct_order_items') }}

    {#- The order's totals, negated: with its lines they add up to 0. #}
    union all

    select
        cityHash64(order_id) as hashed_key,
        'fct_order' as side,
        toUInt64(line_count) as line_hash,
        -item_quantity as quantity,
        -toDecimal128(gross_line_amount, 2) as amount
    from {{ ref('fct_orders') }}
),

orders as (
    select
        hashed_key,
        countIf(side = 'fct_order') > 0 as has_header,
        countIf(side = 'silver_line') as silver_lines,
        sumIf(line_hash, side = 'silver_line') as silver_line_numbers,
        countIf(side = 'fct_line') as fct_lines,
        sumIf(line_hash, side = 'fct_line') as fct_line_numbers,
        sumIf(line_hash, side = 'fct_order') as header_line_count,
        sum(quantity) as quantity_difference,
        sum(amount) as amount_difference
    from order_rows
    group by hashed_key
),

failing as (
    select hashed_key, finding.2 as problem
    from orders
    array join [
        (
            {#- Lines of an order without a header are orphans: not in fct_order_items. #}
            fct_lines != if(has_header, silver_lines, 0)
            or fct_line_numbers != if(has_header, silver_line_numbers, 0),
            'lines differ between silver.order_items and fct_order_items'
        ),
        (
            has_header
            and (header_line_count != fct_lines or quantity_difference != 0 or amount_difference != 0),
            'order totals differ from its lines'
        )
    ] as finding
    where finding.1
)

{{ failing_ids('order_id', [ref('order_items'), ref('fct_order_items'), ref('fct_orders')]) }}
