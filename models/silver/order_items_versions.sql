{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ record_silver_rules() }}",
        order_by='(order_id, _ingested_at, _row_number)',
        partition_by='toYear(_file_date)',
    )
}}
{#- Every landed order line once, typed, with its verdict (see orders_versions). Lines have no
    updated_at: a re-sent line wins by later ingestion, then later row. -#}

with

bronze_rows as (
    select {{ raw_with_lineage('order_items') }}
    from ({{ new_bronze_rows('order_items') }})
),

typed as (
    select
        *,
        {{ trim_space('raw_order_id') }} as order_id,
        toUInt32OrNull({{ trim_space('raw_line_number') }}) as line_number,
        {{ trim_space('raw_product_id') }} as product_id,
        {{ parse_integer('raw_quantity') }} as quantity,
        {{ parse_decimal('raw_unit_price') }} as unit_price,
        coalesce({{ parse_decimal('raw_line_discount') }}, toDecimal64(0, 2)) as line_discount,
        {{ trim_space('raw_line_discount') }} != '' and {{ parse_decimal('raw_line_discount') }} is null
            as has_bad_discount_number
    from bronze_rows
),

checked as (
    select
        * except (has_bad_discount_number),
        multiIf(
            order_id = '' or product_id = '' or {{ trim_space('raw_line_number') }} = '', 'missing_key',
            line_number is null or quantity is null or unit_price is null or has_bad_discount_number,
            'bad_number',
            quantity <= 0, 'non_positive_quantity',
            unit_price <= 0, 'non_positive_price',
            {#- Multiplied in Decimal128, so no quantity and price can overflow here; a line of a
                billion or more is out of the range money has (parse_decimal). #}
            quantity * toDecimal128(unit_price, 2) >= toDecimal128(1000000000, 2), 'bad_number',
            line_discount < 0 or line_discount > quantity * toDecimal128(unit_price, 2), 'bad_discount',
            ''
        ) as reason
    from typed
),

final as (
    select
        * except (_half_fingerprint),
        {{ is_duplicate() }} as _is_duplicate
    from checked
)

select * from final
