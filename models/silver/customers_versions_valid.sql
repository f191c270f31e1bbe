{{ config(materialized='view') }}
{#- Every valid version of every customer over time, as landed (exact copies within a file
    removed; a version sent again in a later file is here again): the input of the slowly
    changing dimension in gold, which keeps one row per customer and `updated_at`. Same columns
    as `customers`. -#}

with

versions as (
    select * from {{ ref('customers_versions') }}
    where reason = '' and not _is_duplicate
),

final as (
    select
        customer_id,
        first_name,
        last_name,
        email,
        is_email_valid,
        phone,
        birth_date,
        assumeNotNull(signup_at) as signup_at,
        toLowCardinality(country_code) as country_code,
        city,
        postal_code,
        toLowCardinality(segment) as segment,
        assumeNotNull(is_marketing_opt_in) as is_marketing_opt_in,
        assumeNotNull(updated_at) as updated_at,
        _source_file,
        _row_number,
        _file_date,
        _batch_id,
        _ingested_at
    from versions
)

select * from final
