{{
    config(
        materialized='incremental',
        incremental_strategy='delete_insert',
        on_schema_change='fail',
        unique_key='customer_id',
        order_by='(customer_id, valid_from)',
        settings={'enable_block_number_column': 1, 'enable_block_offset_column': 1},
        query_settings={'lightweight_delete_mode': 'lightweight_update'},
    )
}}
{#- Customers with their history (slowly changing dimension, type 2): one row per customer and
    updated_at among the valid versions (a version sent again is one row), valid from its updated_at until the next version’s, plus the unknown member
    `-1` that guest orders and not-yet-exported customers point to. Incremental by customer
    (delete_insert on customer_id): a run rebuilds the whole history of each customer with a
    version landed since the last run, so a late, out-of-order version simply takes its place
    in it. Versions are only ever added, so no other customer’s history changes. The unknown
    member is written by every run (it has no versions to be selected by). -#}

with

customer_versions as (
    select * from {{ ref('customers_versions_valid') }}
    {%- if is_incremental() %}
    where customer_id in (
        select versions.customer_id from {{ ref('customers_versions_valid') }} as versions
        where versions._ingested_at > {{ newest_ingested_at(this) }}
    )
    {%- endif %}
),

{# Two different versions with the same updated_at: keep the one silver would keep (latest
    ingestion, then row number), so a version is identified by customer_id + updated_at. -#}
distinct_versions as (
    select *
    from customer_versions
    order by customer_id asc, updated_at asc, _ingested_at desc, _row_number desc
    limit 1 by customer_id, updated_at
),

history as (
    select
        *,
        row_number() over (partition by customer_id order by updated_at) as version_number,
        leadInFrame(toNullable(updated_at)) over (
            partition by customer_id
            order by updated_at
            rows between current row and 1 following
        ) as next_updated_at
    from distinct_versions
),

known_customers as (
    select
        lower(hex(MD5(concat(customer_id, '|', toString(updated_at))))) as customer_key,
        customer_id,
        first_name,
        last_name,
        email,
        toBool(is_email_valid) as is_email_valid,
        phone,
        birth_date,
        signup_at,
        country_code,
        city,
        postal_code,
        segment,
        toBool(is_marketing_opt_in) as is_marketing_opt_in,
        updated_at as valid_from,
        next_updated_at as valid_to,
        cast(next_updated_at is null as Bool) as is_current,
        toUInt32(version_number) as version_number,
        false as is_unknown,
        _source_file,
        _ingested_at
    from history
),

unknown_member as (
    select
        '-1' as customer_key,
        '-1' as customer_id,
        'Unknown' as first_name,
        'Unknown' as last_name,
        cast(null as Nullable(String)) as email,
        false as is_email_valid,
        cast(null as Nullable(String)) as phone,
        cast(null as Nullable(Date32)) as birth_date,
        toDateTime64(0, 3, 'UTC') as signup_at,
        toLowCardinality('ZZ') as country_code,
        '' as city,
        '' as postal_code,
        toLowCardinality('unknown') as segment,
        false as is_marketing_opt_in,
        toDateTime64(0, 3, 'UTC') as valid_from,
        cast(null as Nullable(DateTime64(3, 'UTC'))) as valid_to,
        true as is_current,
        toUInt32(1) as version_number,
        true as is_unknown,
        '' as _source_file,
        toDateTime64(0, 3, 'UTC') as _ingested_at
),

final as (
    select * from known_customers
    union all
    select * from unknown_member
)

select * from final
