{#- The facts’ USD amounts are at the FX seed’s current rates. A rate revised in
    seeds/fx_rates_monthly.csv after rows were built leaves those rows at the old rate: a run
    recomputes only the rows whose data changed. Each finding is a fact, currency, month and
    stored rate the seed no longer has, with its rows; `ecom run --full-refresh` (or
    `dbt build --full-refresh -s fx_rates_monthly+`) converts them again. A month added to the
    seed where rows used an earlier month’s rate is the warning test
    fct_orders_fx_rate_of_the_order_month’s. Order lines carry their order’s rate, so
    fct_orders speaks for them; an amount with no rate at all (usd_per_unit 0) is the
    usd_per_unit tests’. -#}

{#- Shown in Dagster as a check of fct_orders (it reads several models). -#}
{{ config(meta={'dagster': {'ref': {'name': 'fct_orders'}}}) }}

with

seed_rates as (
    {{ fx_rates() }}
),

stored_rates as (
    {%- for fact in ['fct_orders', 'fct_payments'] %}
    select
        '{{ fact }}' as fact,
        currency_code,
        fx_month,
        usd_per_unit,
        count() as rows_at_this_rate
    from {{ ref(fact) }}
    where usd_per_unit > 0
    group by currency_code, fx_month, usd_per_unit
    {{ 'union all' if not loop.last }}
    {%- endfor %}
)

select * from stored_rates
where (currency_code, fx_month, usd_per_unit) not in (
    select
        seed_rates.currency_code,
        seed_rates.fx_month,
        seed_rates.usd_per_unit
    from seed_rates
)
