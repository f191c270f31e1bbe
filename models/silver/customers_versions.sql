{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ record_silver_rules() }}",
        order_by='(customer_id, _ingested_at, _row_number)',
        partition_by='toYear(_file_date)',
    )
}}
{#- Every landed customer row once, typed, with its verdict (see orders_versions). -#}

with

{{ country_lookup() }} as country_map,

bronze_rows as (
    select {{ raw_with_lineage('customers') }}
    from ({{ new_bronze_rows('customers') }})
),

typed as (
    select
        *,
        {{ trim_space('raw_customer_id') }} as customer_id,
        {{ trim_space('raw_first_name') }} as first_name,
        {{ trim_space('raw_last_name') }} as last_name,
        lowerUTF8({{ trim_space('raw_email') }}) as email_clean,
        {{ valid_email('email_clean') }} as is_email_valid,
        if(is_email_valid, email_clean, null) as email,
        {{ nullif_blank('raw_phone') }} as phone,
        {{ parse_date('raw_birth_date') }} as birth_date,
        {{ parse_timestamp('raw_signup_at') }} as signup_at,
        {{ to_country('raw_country') }} as country_code,
        {{ trim_space('raw_city') }} as city,
        {{ trim_space('raw_postal_code') }} as postal_code,
        {{ clean_code('raw_segment') }} as segment,
        if({{ trim_space('raw_marketing_opt_in') }} = '', false, {{ parse_bool('raw_marketing_opt_in') }})
            as is_marketing_opt_in,
        {{ parse_timestamp('raw_updated_at') }} as updated_at
    from bronze_rows
),

checked as (
    select
        * except (email_clean),
        multiIf(
            customer_id = '', 'missing_key',
            signup_at is null or updated_at is null, 'bad_timestamp',
            {{ is_future('signup_at') }} or {{ is_future('updated_at') }}, 'future_timestamp',
            is_marketing_opt_in is null, 'bad_value',
            ''
        ) as reason
    from typed
),

final as (
    select
        * except (_half_fingerprint),
        {{ is_duplicate() }} as _is_duplicate
    from checked
)

select * from final
