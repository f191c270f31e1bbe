{#- The quarantine counts by reason in mart_data_quality add up, per entity and day, to the
    quarantined rows of silver’s reconciliation, and its duplicate counts are silver’s: a day
    either one holds and the other does not counts as 0 there. -#}

{#- Shown in Dagster as a check of mart_data_quality (it reads several models). -#}
{{ config(meta={'dagster': {'ref': {'name': 'mart_data_quality'}}}) }}

with

mart as (
    select
        toString(entity) as entity,
        file_date,
        sumIf(value, metric = 'quarantined_rows') as quarantined_rows,
        sumIf(value, metric = 'duplicate_rows') as duplicate_rows
    from {{ ref('mart_data_quality') }}
    group by entity, file_date
),

reconciliation as (
    select
        toString(entity) as entity,
        file_date,
        quarantined_rows,
        duplicate_rows
    from {{ ref('reconciliation') }}
)

select
    entity,
    file_date,
    reconciliation.quarantined_rows as reconciliation_quarantined,
    mart.quarantined_rows as mart_quarantined,
    reconciliation.duplicate_rows as reconciliation_duplicates,
    mart.duplicate_rows as mart_duplicates
from reconciliation
full join mart using (entity, file_date)
where reconciliation.quarantined_rows != mart.quarantined_rows
    or reconciliation.duplicate_rows != mart.duplicate_rows
{#- The engine’s default, pinned: a side without the day holds 0s, not NULLs that compare to nothing. #}
settings join_use_nulls = 0
