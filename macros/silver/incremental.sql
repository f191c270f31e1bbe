{#- How silver reads only what is new (SPEC section 5, issue: incremental by day).

    `<entity>_versions` append the bronze rows of batches landed since the last run. A batch
    counts once its ingest log row says `landed`, so rows of a load interrupted mid-file
    never reach silver. Batches land one after another, so "newer than the newest
    `_ingested_at` already here" is exactly "not processed yet". -#}
{% macro new_bronze_rows(entity) -%}
select *
from {{ source('bronze', entity) }}
where _batch_id in (
    select batch_id from {{ source('bronze', 'ingest_log') }}
    where status = 'landed' and entity = '{{ entity }}'
)
{%- if is_incremental() %}
  and _ingested_at > {{ newest_ingested_at(this) }}
{%- endif %}
{%- endmacro %}

{#- Row fingerprint over every source column, to find exact duplicates: a UInt128 of two
    independent 64-bit hashes (cityHash64 and xxh3, each over the columns one by one, so
    ('ab', 'c') and ('a', 'bc') differ). Both must collide for two rows to be taken for one.
    Over the 12 columns of 15.8M order rows it takes 1 s where sipHash128 of the same columns
    took 7.5 s. -#}
{% macro row_hash(columns) -%}
bitOr(bitShiftLeft(toUInt128({{ half_fingerprint(columns) }}), 64), toUInt128(xxh3({{ columns | join(', ') }})))
{%- endmacro %}

{#- The fingerprint’s high half, cityHash64 of the columns: rows with the same fingerprint have
    the same half, so the repeats of the half include every repeated fingerprint
    (`is_duplicate`). -#}
{% macro half_fingerprint(columns) -%}
cityHash64({{ columns | join(', ') }})
{%- endmacro %}

{#- An exact duplicate is a row repeated further down the same file: every copy of a
    fingerprint in one batch but the last is a duplicate, and the last is the row’s version. A
    row that repeats one of an earlier file is not a duplicate but a version sent again, which
    takes its place among the key’s versions by the version order: an order line sent as A, then
    B, then A again on three days is A, as SPEC section 5 reads (latest ingestion wins), and so
    is a line written A, B, A in one file. A batch lands whole, so every copy of a duplicate is in
    the run that reads it, and an incremental run never looks back into the table.

    Only fingerprints that occur more than once in a batch (in the model’s `bronze_rows` CTE, of
    which the window reads only the fingerprint and lineage) go through the window that ranks their rows, which yields the
    few duplicates’ (`_ingested_at`, `_row_number`) pairs: a window over every row sorted 15.8M
    order rows to find 0.3M repeated fingerprints. The two passes that find them compare
    `_half_fingerprint`, the fingerprint’s cityHash64 half: its repeats include every repeated
    fingerprint, and the window partitions by the whole one. Each pass over the rows computes
    what it compares, since a CTE runs again at each reference; with the half, the SELECT of
    orders_versions’ full refresh of ten years took 27-37 CPU seconds and 0.4 GB instead of
    34-39 s and 0.8 GB (eight runs each), payments_versions’ 15.1-15.4 s instead of 17.6-18.4 s.
    The models leave the column out of their tables.

    (`_ingested_at`, `_row_number`) names one bronze row, and `_ingested_at` one batch: the
    loader gives every file its own, strictly increasing `_ingested_at` (`ingestion_start` in
    `ecom.load`; `tests/test_load.py` checks it). The pairs are looked up as two numbers
    rather than as the batch id string and the row number: the SELECT of orders_versions’ full
    refresh of ten years took 14.2-16.4 CPU seconds against 18.0-20.6 s (interleaved runs), the
    same verdict on every row. -#}
{% macro is_duplicate() -%}
(
    (_ingested_at, _row_number) in (
        select _ingested_at, _row_number
        from (
            select
                _ingested_at,
                _row_number,
                row_number() over (
                    partition by _ingested_at, _row_hash order by _row_number desc
                ) as copies_after
            from bronze_rows
            where (_ingested_at, _half_fingerprint) in (
                select _ingested_at, _half_fingerprint
                from bronze_rows
                group by _ingested_at, _half_fingerprint
                having count() > 1
            )
        )
        where copies_after > 1
    )
)
{%- endmacro %}

{#- Post-hook of the versions models: the rules below as the table’s comment. Hooks are rendered
    when dbt parses the project too, where dbt-clickhouse cannot tell a cluster’s ON CLUSTER
    clause yet (it fails there on the cluster target): written only when running. -#}
{% macro record_silver_rules() -%}
    {%- if execute %}{{ alter_relation_comment(this, silver_rules()) }}{% endif -%}
{%- endmacro %}

{#- The rules by which the versions models judge a landed row (valid, quarantined and why, an
    exact duplicate), written as the comment of every versions table they built. Incremental runs
    never judge a kept row again, so a versions table with another comment holds verdicts of
    earlier rules: create_incremental_state stops every run but a full refresh until the
    warehouse is built anew. Change the text (the number) with every change to what silver
    decides about a row; a change of speed alone keeps it. No quote or backslash in it: it is
    written into SQL string literals as it is.
    1: exact duplicates are the copies of a row further up the same file (before it, a copy of a
       row of any earlier file was one; the comment was the rule’s text alone).
    2: an ISO 8601 timestamp may carry up to nine fraction digits (it was bad_timestamp beyond six).
    3: an ISO 8601 timestamp without seconds or with an hours-only offset is read (it was
       bad_timestamp), and an apostrophe before an email’s @ is valid (the email was NULL).
    4: an order’s order_ts before the first month of its currency’s FX rates is bad_timestamp
       (it was valid, and gold’s FX tests failed the build).
    5: values are trimmed of tabs, line breaks and no-break spaces too, not spaces alone (a key
       of white space only was a key, a padded code or number was quarantined).
    6: $ on an order shipped to Canada or Mexico, and on its payments, is CAD or MXN (it was USD). -#}
{% macro silver_rules() -%}
silver rules 6: exact duplicates are the copies of a row further up the same file; ISO 8601 fractions up to nine digits; ISO 8601 without seconds or with an hour offset; an apostrophe in an email; an order before its currency has FX rates; tabs and no-break spaces trimmed; a dollar sign in the currency of an order shipped to Canada or Mexico and of its payments
{%- endmacro %}

{#- The order of a key’s versions, latest last (SPEC section 5): `updated_at`, ties by
    `_ingested_at`, then `_row_number`, packed into one UInt128 that compares as that tuple
    does: each timestamp as 44 bits of milliseconds since 1900 (DateTime64 spans 1900-2299), the
    row number as the low 40 bits. A NULL `updated_at` (never on a valid version) counts as the
    earliest. One number, not a tuple, because the engine compares tuples column by column
    per row: the argMax of reconciliation over 15.8M order versions took 9 CPU seconds with
    the tuple and 3.4 s with the number. -#}
{% macro version_order(has_updated_at=true) -%}
(
    {%- if has_updated_at %}
    bitShiftLeft(toUInt128(ifNull({{ millis_since_1900('updated_at') }}, 0)), 84) +
    {%- endif %}
    bitShiftLeft(toUInt128({{ millis_since_1900('_ingested_at') }}), 40)
    + toUInt128(_row_number)
)
{%- endmacro %}

{#- A DateTime64’s milliseconds since 1900-01-01, the type’s earliest value: never negative,
    and below 2^44 up to 2299, its latest. -#}
{% macro millis_since_1900(column) -%}
(toUnixTimestamp64Milli({{ column }}) + 2208988800000)
{%- endmacro %}

{#- The latest valid version of every key (latest updated_at, ties by latest ingestion, then
    row number). On an incremental run only keys with a version newer than anything in the
    current table are recomputed, from all their versions: cost follows the new data. Sorted
    by the key first, as the versions tables are: the engine reads them in key order and only
    sorts the versions of one key at a time (a full sort of 15.8M order versions took 7.7 GB
    and 16 s; key first, 3.0 GB and 11 s). -#}
{% macro latest_valid_versions(entity, keys, has_updated_at=true) -%}
select *
from {{ ref(entity ~ '_versions') }}
where reason = '' and not _is_duplicate
{%- if is_incremental() %}
    and ({{ keys | join(', ') }}) in (
        select {{ keys | join(', ') }}
        from {{ ref(entity ~ '_versions') }}
        where _ingested_at > {{ newest_ingested_at(this) }}
    )
{%- endif %}
order by {{ keys | join(', ') }}, {{ version_order(has_updated_at) }} desc
limit 1 by {{ keys | join(', ') }}
{%- endmacro %}

{#- The newest landing the five versions tables hold, as one `_ingested_at` row: the most
    mart_data_quality can include (reconciliation records each entity's own). -#}
{% macro newest_landing() -%}
select max(newest) as _ingested_at
from (
    {%- for entity in ['customers', 'products', 'orders', 'order_items', 'payments'] %}
    select {{ newest_ingested_at(ref(entity ~ '_versions')) }} as newest
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
)
{%- endmacro %}
