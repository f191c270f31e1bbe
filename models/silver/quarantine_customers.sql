{{ config(materialized='view') }}
{#- Rows of customers that broke a rule, as landed, with the reason; duplicates of them are counted as
    duplicates instead. -#}
{{ quarantine_select('customers') }}
