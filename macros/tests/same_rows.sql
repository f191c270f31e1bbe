{#- One row with one column, `agree`: whether two relations hold the same rows of `columns`,
    compared as a whole, with no grouping: their counts, and the sums of a 64-bit hash of each
    row’s `columns` (sums of UInt64 wrap around). A row twice in both still agrees: a key’s
    uniqueness is its unique tests’. For a singular test that compares two tables key by key
    only when they do not agree (`where not (select tables_agree.agree from tables_agree)`:
    under a false condition the engine reads nothing). -#}
{% macro same_rows(left, right, columns) -%}
select
    left_side.row_count = right_side.row_count
    and left_side.checksum = right_side.checksum as agree
from (
    select
        count() as row_count,
        sum(cityHash64({{ columns | join(', ') }})) as checksum
    from {{ left }}
) as left_side
cross join (
    select
        count() as row_count,
        sum(cityHash64({{ columns | join(', ') }})) as checksum
    from {{ right }}
) as right_side
{%- endmacro %}
