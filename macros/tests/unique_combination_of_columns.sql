{#- Fails for every combination of the columns that occurs more than once. Found in two steps:
    the groups of all columns but the last whose row count differs from their number of
    distinct last-column values, then the repeated combinations within those groups only.
    Grouping 15.8M bronze order rows by (_batch_id, _row_number) took 2.5 s; by _batch_id with
    a count of distinct row numbers, 0.4 s. Put the column with the most values last. NULL is
    one value, as in GROUP BY (both steps compare tuples, and a tuple’s NULL equals NULL). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
{%- set columns = combination_of_columns -%}
{%- set prefix = columns[:-1] | join(', ') -%}
{%- if prefix %}
with groups_with_repeats as (
    select tuple({{ prefix }}) as prefix
    from {{ model }}
    group by {{ prefix }}
    having count() != uniqExact(tuple({{ columns[-1] }}))
)

{% endif -%}
select
    {{ columns | join(', ') }},
    count() as occurrences
from {{ model }}
{%- if prefix %}
where tuple({{ prefix }}) in (select prefix from groups_with_repeats)
{%- endif %}
group by {{ columns | join(', ') }}
having count() > 1
{% endtest %}
