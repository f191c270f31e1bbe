{#- Reconciliation: fails for every group where `left_expression` differs from `right_expression`
    (for instance bronze rows against silver + duplicates + superseded + quarantined). -#}
{% test reconciles(model, left_expression, right_expression, group_by=[]) %}
select
    {%- for column in group_by %}
    {{ column }},
    {%- endfor %}
    {{ left_expression }} as left_value,
    {{ right_expression }} as right_value
from {{ model }}
{%- if group_by %}
group by {{ group_by | join(', ') }}
{%- endif %}
having left_value != right_value
{% endtest %}
