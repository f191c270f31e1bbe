{{
    config(
        materialized='table',
        order_by='(cohort_month, months_since_first)',
        query_settings={'join_use_nulls': 0},
    )
}}
{#- Monthly cohorts by first revenue order: one row per cohort month and month since then,
    up to the latest month with orders, so a month without any returning customer shows 0
    rather than a gap. Cohorts x months stays small: a table rebuilt every run.
    join_use_nulls = 0 (the engine’s default, pinned): an unmatched LEFT JOIN column holds
    its type’s default ('' or 0), handled explicitly below. -#}

with

revenue_orders as (
    select
        assumeNotNull(customer_id) as customer_id,
        toStartOfMonth(order_date) as activity_month,
        net_revenue_usd
    from {{ ref('fct_orders') }}
    where is_revenue_order and customer_id is not null
),

first_revenue_orders as (
    select
        customer_id,
        cohort_month
    from {{ ref('int_customer_first_revenue_orders') }}
),

cohort_activity as (
    select
        revenue_orders.customer_id as customer_id,
        first_revenue_orders.cohort_month as cohort_month,
        revenue_orders.activity_month as activity_month,
        revenue_orders.net_revenue_usd as net_revenue_usd
    from revenue_orders
    inner join first_revenue_orders
        on revenue_orders.customer_id = first_revenue_orders.customer_id
),

latest_month as (
    select toStartOfMonth(max(order_date)) as last_month from {{ ref('fct_orders') }}
),

cohorts as (
    select
        cohort_month,
        count() as cohort_size
    from first_revenue_orders
    group by cohort_month
),

activity as (
    select
        cohort_month,
        toUInt32(dateDiff('month', cohort_month, activity_month)) as months_since_first,
        uniqExact(customer_id) as active_customers,
        sum(net_revenue_usd) as exact_revenue_usd
    from cohort_activity
    group by cohort_month, months_since_first
),

cohort_months as (
    select
        cohorts.cohort_month as cohort_month,
        cohorts.cohort_size as cohort_size,
        {#- The ARRAY JOIN’s alias below belongs to no table: it cannot be qualified. #}
        months_since_first  -- noqa: RF02
    from cohorts
    cross join latest_month
    array join range(
        toUInt32(dateDiff('month', cohorts.cohort_month, latest_month.last_month) + 1)
    ) as months_since_first
),

final as (
    select
        cohort_months.cohort_month as cohort_month,
        toUInt32(cohort_months.months_since_first) as months_since_first,
        addMonths(cohort_months.cohort_month, cohort_months.months_since_first) as activity_month,
        cohort_months.cohort_size as cohort_size,
        {#- A month nobody came back: 0 active customers, 0 revenue. #}
        activity.active_customers as active_customers,
        activity.active_customers / cohort_months.cohort_size as retention_rate,
        {{ usd_cents('activity.exact_revenue_usd') }} as revenue_usd
    from cohort_months
    left join activity
        on cohort_months.cohort_month = activity.cohort_month
        and cohort_months.months_since_first = activity.months_since_first
)

select * from final
