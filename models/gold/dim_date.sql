{{
    config(
        materialized='table',
        order_by='(date_key)',
    )
}}
{#- The calendar: one row per day from 1 January of the year of the earliest order or
    payment to 31 December of the year after the latest one (2149-06-06 at most), so reports
    can show empty days and the coming months. At most 366 rows a year: a plain table rebuilt
    every run costs nothing. -#}

with

orders as (
    select order_date from {{ ref('orders') }}
),

payments as (
    select toDate(payment_ts) as payment_date from {{ ref('payments') }}
),

{# Each table’s earliest and latest date in one pass over it (NULL when it is empty). -#}
data_range as (
    select
        (select (minOrNull(order_date), maxOrNull(order_date)) from orders) as order_dates,
        (select (minOrNull(payment_date), maxOrNull(payment_date)) from payments) as payment_dates,
        least(coalesce(order_dates.1, today()), coalesce(payment_dates.1, today())) as first_date,
        greatest(coalesce(order_dates.2, today()), coalesce(payment_dates.2, today())) as last_date
),

calendar_bounds as (
    select
        toStartOfYear(first_date) as start_date,
        {#- The engine’s Date ends on 2149-06-06 (the last day a raw file can have): a
            calendar that would reach past it stops there instead of wrapping to 1970. #}
        least(
            toDate32(toStartOfYear(last_date)) + interval 2 year - interval 1 day,
            toDate32('2149-06-06')
        ) as end_date
    from data_range
),

days as (
    select toDate(start_date + day_offset) as date_key
    from calendar_bounds
    array join range(toUInt32(dateDiff('day', start_date, end_date) + 1)) as day_offset
),

final as (
    select
        date_key,
        toYear(date_key) as year,
        toQuarter(date_key) as quarter,
        toMonth(date_key) as month,
        monthName(date_key) as month_name,
        formatDateTime(date_key, '%Y-%m') as year_month,
        toStartOfMonth(date_key) as month_start_date,
        toStartOfQuarter(date_key) as quarter_start_date,
        toDayOfMonth(date_key) as day_of_month,
        toDayOfYear(date_key) as day_of_year,
        toISOYear(date_key) as iso_year,
        toISOWeek(date_key) as iso_week,
        toMonday(date_key) as week_start_date,
        toDayOfWeek(date_key) as day_of_week,
        dateName('weekday', date_key) as day_name,
        cast(toDayOfWeek(date_key) >= 6 as Bool) as is_weekend
    from days
)

select * from final
