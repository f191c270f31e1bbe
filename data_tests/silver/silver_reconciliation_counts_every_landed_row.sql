{#- Every landed row is counted in silver’s reconciliation: per entity and file day, the rows
    the ingest log lists as landed are the reconciliation’s bronze rows. The `reconciles` test
    checks the days the reconciliation holds; this one that it holds each of them once, and no
    other (a day the ingest log has, or has more rows of, is missing there). -#}

{#- Shown in Dagster as a check of reconciliation (it reads the ingest log too). -#}
{{ config(meta={'dagster': {'ref': {'name': 'reconciliation'}}}) }}

with

logged as (
    select
        toString(entity) as entity,
        assumeNotNull(file_date) as file_date,
        sum(rows) as logged_rows
    from {{ source('bronze', 'ingest_log') }}
    where status = 'landed'
    group by entity, file_date
),

counted as (
    select
        toString(entity) as entity,
        file_date,
        sum(bronze_rows) as bronze_rows
    from {{ ref('reconciliation') }}
    group by entity, file_date
)

select
    entity,
    file_date,
    logged_rows,
    bronze_rows
from logged
full join counted using (entity, file_date)
where logged_rows != bronze_rows
{#- The engine’s default, pinned: a side without the day holds 0s, not NULLs that compare to nothing. #}
settings join_use_nulls = 0
