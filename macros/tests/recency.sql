{#- Fails when the newest value of a timestamp column is older than `interval` `datepart`s before now. -#}
{% test recency(model, column_name, datepart, interval) %}
select max({{ column_name }}) as newest
from {{ model }}
having newest < now() - interval {{ interval }} {{ datepart }}
    or newest is null
{% endtest %}
