{#- Fails for each lineage column of a bronze table that the table lacks or holds as Nullable
    (also inside LowCardinality). The loader makes them of types that are not Nullable (`LINEAGE`
    in src/ecom/contract.py), so a `not_null` test on one of them could never fail, while costing
    dbt a node on every run: this checks the types instead, one test per table. The columns are
    `columns`, else those of the source’s YAML with a leading underscore (as `source_columns`
    reads them). Defined on a source, each test is a check of that source’s landing asset. -#}
{% test lineage_columns_not_nullable(model, columns=none) %}
{%- set expected = [] %}
{%- if columns %}
    {%- do expected.extend(columns) %}
{%- elif execute %}
    {%- for name in graph.sources['source.' ~ project_name ~ '.bronze.' ~ model.identifier].columns
            if name.startswith('_') %}
        {%- do expected.append(name) %}
    {%- endfor %}
{%- endif %}
select column_name
from values('column_name String', {%- for name in expected %} ('{{ name }}'){{ ',' if not loop.last }}{% endfor %})
where column_name not in (
    select name from system.columns
    where database = '{{ model.schema }}' and table = '{{ model.identifier }}' and type not like '%Nullable(%'
)
{% endtest %}
