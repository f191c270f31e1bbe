{#- The source columns of a bronze table, read from the source’s YAML (single definition
    next to the table docs); lineage columns (leading underscore) excluded. -#}
{% macro source_columns(entity) -%}
    {%- set columns = [] -%}
    {%- if execute -%}
        {%- set node = graph.sources['source.' ~ project_name ~ '.bronze.' ~ entity] -%}
        {%- for name in node.columns -%}
            {%- if not name.startswith('_') -%}{%- do columns.append(name) -%}{%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(columns) }}
{%- endmacro %}

{#- `col as raw_col, ...` for every source column, plus the lineage columns but `_file_sha256`
    (the per-file strings as plain String whatever bronze stores them as, so silver’s and gold’s
    column types do not depend on when bronze was created), the row’s fingerprint and its first
    half, with which `is_duplicate` finds repeated fingerprints (not kept in the versions
    tables). -#}
{% macro raw_with_lineage(entity) -%}
    {%- for column in source_columns(entity) %}
    `{{ column }}` as raw_{{ column }},
    {%- endfor %}
    cast(_source_file as String) as _source_file,
    _row_number,
    _file_date,
    cast(_batch_id as String) as _batch_id,
    _ingested_at,
    {{ row_hash(prefixed_columns(entity, '`', '`')) }} as _row_hash,
    {{ half_fingerprint(prefixed_columns(entity, '`', '`')) }} as _half_fingerprint
{%- endmacro %}

{% macro prefixed_columns(entity, before='raw_', after='') -%}
    {%- set names = [] -%}
    {%- for column in source_columns(entity) -%}
        {%- do names.append(before ~ column ~ after) -%}
    {%- endfor -%}
    {{ return(names) }}
{%- endmacro %}

{#- The quarantine relation of an entity: raw columns under their source names, the lineage,
    and the reason. -#}
{% macro quarantine_select(entity) -%}
select
    {%- for column in source_columns(entity) %}
    raw_{{ column }} as `{{ column }}`,
    {%- endfor %}
    _source_file,
    _row_number,
    _file_date,
    _batch_id,
    _ingested_at,
    reason
from {{ ref(entity ~ '_versions') }}
where reason != '' and not _is_duplicate
{%- endmacro %}
