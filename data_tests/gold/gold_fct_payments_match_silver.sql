{#- fct_payments holds every payment of silver exactly once, at the same status and amount:
    the incremental runs miss no payment and keep no superseded version. One aggregation over
    both tables, key by key. -#}

with

both_sides as (
    select
        payment_id,
        1 as in_silver,
        0 as in_fct,
        cityHash64(payment_status, amount) as version
    from {{ ref('payments') }}

    union all

    select
        payment_id,
        0 as in_silver,
        1 as in_fct,
        cityHash64(payment_status, amount) as version
    from {{ ref('fct_payments') }}
)

select
    payment_id,
    multiIf(
        sum(in_fct) = 0, 'missing from fct_payments',
        sum(in_silver) = 0, 'not in silver.payments',
        sum(in_fct) > 1, 'more than one row in fct_payments',
        'at another status or amount than in silver.payments'
    ) as problem
from both_sides
group by payment_id
having sum(in_silver) != 1 or sum(in_fct) != 1 or min(version) != max(version)
