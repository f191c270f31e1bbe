{{
    config(
        materialized='table',
        order_by='(country_code)',
    )
}}
{#- Countries from the reference seed plus the unknown member `ZZ` (what silver emits for a
    country it cannot map). A handful of rows: a table rebuilt every run. -#}

with

countries as (
    select * from {{ ref('countries') }}
),

known_countries as (
    select
        toLowCardinality(toString(country_code)) as country_code,
        toString(country_name) as country_name,
        toString(alpha3) as alpha3,
        toLowCardinality(toString(region)) as region,
        toLowCardinality(toString(currency_code)) as currency_code,
        false as is_unknown
    from countries
    where country_code != 'ZZ'
),

unknown_member as (
    select
        toLowCardinality('ZZ') as country_code,
        'Unknown country' as country_name,
        'ZZZ' as alpha3,
        toLowCardinality('unknown') as region,
        {#- ISO 4217’s code for "no currency". -#}
        toLowCardinality('XXX') as currency_code,
        true as is_unknown
),

final as (
    select * from known_countries
    union all
    select * from unknown_member
)

select * from final
