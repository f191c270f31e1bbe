{#- The rows of a singular test that aggregates by a 64-bit hash of an id instead of the id
    (carrying the strings through the aggregation costs half as much CPU again): `failing` is
    its CTE of failing keys, with `hashed_key` (`cityHash64(<id_column>)`) and `problem`, and
    this selects the ids behind them from `relations`, one row per id and problem. The failing
    keys are the join’s right side, built first: with none, the engine reads nothing of the
    relations. -#}
{% macro failing_ids(id_column, relations, failing='failing') -%}
select distinct ids.{{ id_column }} as {{ id_column }}, {{ failing }}.problem as problem
from (
    {%- for relation in relations %}
    select {{ id_column }}, cityHash64({{ id_column }}) as hashed_key from {{ relation }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
) as ids
inner join {{ failing }} using (hashed_key)
{%- endmacro %}
