{#- Like dbt's `relationships`, but right on ClickHouse: a LEFT JOIN there fills a missing match
    with the type's default ('' or 0), not NULL, so dbt's `where parent is null` would pass
    every orphan. Anti-join with NOT IN instead; `ignore` lists child values that need no
    parent (such as unknown-member keys). -#}
{% test relationships_present(model, column_name, to, field, ignore=[]) %}
select {{ column_name }} as child_value
from {{ model }}
where {{ column_name }} is not null
  {%- for value in ignore %}
  and {{ column_name }} != {{ "'" ~ value ~ "'" if value is string else value }}
  {%- endfor %}
  and {{ column_name }} not in (select {{ field }} from {{ to }} where {{ field }} is not null)
{% endtest %}
