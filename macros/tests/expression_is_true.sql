{#- Fails for every row where the boolean SQL expression is not true. -#}
{% test expression_is_true(model, expression, where=none) %}
select *
from {{ model }}
where not ({{ expression }})
{%- if where %} and ({{ where }}){% endif %}
{% endtest %}
