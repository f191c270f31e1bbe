{#- fct_payments holds every payment of silver exactly once, at the same status and amount:
    the incremental runs miss no payment and keep no superseded version. -#}

with

silver_payments as (
    select payment_id, payment_status, amount from {{ ref('payments') }}
),

fct_payments as (
    select payment_id, payment_status, amount from {{ ref('fct_payments') }}
)

select payment_id, 'missing from fct_payments or at another version' as problem
from silver_payments
where (payment_id, payment_status, amount) not in (select * from fct_payments)

union all

select payment_id, 'not in silver.payments at this version' as problem
from fct_payments
where (payment_id, payment_status, amount) not in (select * from silver_payments)

union all

select payment_id, 'more than one row in fct_payments' as problem
from fct_payments
group by payment_id
having count() > 1
