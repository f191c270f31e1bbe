{#- Fails for every row whose text value is NULL, empty or white space only (`trim_space`). A
    `String` column that is not Nullable cannot hold NULL: a missing value lands as '' (a blank
    seed cell, a CAST of NULL), which `not_null` does not see. -#}
{% test not_blank(model, column_name) %}
select {{ column_name }}
from {{ model }}
where empty({{ trim_space("ifNull(toString(" ~ column_name ~ "), '')") }})
{% endtest %}
