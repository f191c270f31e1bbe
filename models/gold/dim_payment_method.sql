{{
    config(
        materialized='table',
        order_by='(payment_method)',
    )
}}
{#- Payment methods from the reference seed plus the unknown member `unknown`. A handful of
    rows: a table rebuilt every run. -#}

with

payment_methods as (
    select * from {{ ref('payment_methods') }}
),

known_methods as (
    select
        toLowCardinality(toString(payment_method)) as payment_method,
        toString(method_name) as method_name,
        toBool(is_card_based) as is_card_based,
        toBool(authorizes_at_checkout) as authorizes_at_checkout,
        toBool(collected_on_delivery) as collected_on_delivery,
        false as is_unknown
    from payment_methods
    where payment_method != 'unknown'
),

unknown_member as (
    select
        toLowCardinality('unknown') as payment_method,
        'Unknown method' as method_name,
        false as is_card_based,
        false as authorizes_at_checkout,
        false as collected_on_delivery,
        true as is_unknown
),

final as (
    select * from known_methods
    union all
    select * from unknown_member
)

select * from final
