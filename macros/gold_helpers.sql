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
