{#- Fails for every row where the boolean SQL expression is false (a NULL result passes). A test's `where` belongs in
    its `config:` (dbt filters the model before the test reads it). -#}
{% test expression_is_true(model, expression) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
