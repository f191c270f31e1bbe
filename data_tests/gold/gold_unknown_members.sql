{#- Every dimension has exactly one unknown member, under the documented key
    (docs: unknown_members). -#}

{#- Shown in Dagster as a check of dim_customers (it reads several models). -#}
{{ config(meta={'dagster': {'ref': {'name': 'dim_customers'}}}) }}

with

members as (
    select 'dim_customers' as dimension, customer_key as member_key, is_unknown
    from {{ ref('dim_customers') }}
    union all
    select 'dim_products', product_id, is_unknown from {{ ref('dim_products') }}
    union all
    select 'dim_geography', toString(country_code), is_unknown from {{ ref('dim_geography') }}
    union all
    select 'dim_payment_method', toString(payment_method), is_unknown
    from {{ ref('dim_payment_method') }}
),

expected as (
    select
        dimension,
        member_key
    from values(
        'dimension String, member_key String',
        ('dim_customers', '-1'),
        ('dim_products', '-1'),
        ('dim_geography', 'ZZ'),
        ('dim_payment_method', 'unknown')
    )
)

select
    expected.dimension,
    countIf(members.is_unknown) as unknown_members,
    countIf(members.is_unknown and members.member_key = expected.member_key) as under_expected_key
from expected
left join members on expected.dimension = members.dimension
group by expected.dimension
having (unknown_members != 1 or under_expected_key != 1)
    {#- `dbt build --empty` reads every model as no rows: no member to count. #}
    {%- if flags.EMPTY %} and false{% endif %}
