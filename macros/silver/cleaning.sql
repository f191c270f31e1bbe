{#- Standardising raw strings (SPEC section 6). Each returns NULL when the value cannot be
    read, so the caller can decide between quarantine and keeping the row. -#}

{#- A value without the white space exports put round it: ASCII’s (space, tab, line feed,
    carriage return, vertical tab, form feed) and the no-break space U+00A0 that spreadsheets
    write. The engine’s `trimBoth` alone removes spaces only (a tab-only order id was an order),
    and its list of characters works byte by byte, so it cannot take U+00A0 (C2 A0) without
    cutting `à` (C3 A0) in two: a value holding a no-break space goes through a regular
    expression, the others do not pay for it (0.30 against 0.12 CPU seconds for 32M values).
    Other Unicode spaces (U+2000-U+200A, U+3000) are kept. -#}
{% macro trim_space(column) -%}
if(position({{ column }}, '\xC2\xA0') > 0,
    replaceRegexpAll({{ column }}, '^[\\s\\x0B\\x{00A0}]+|[\\s\\x0B\\x{00A0}]+$', ''),
    trimBoth({{ column }}, ' \t\n\r\x0B\x0C'))
{%- endmacro %}

{#- The three accepted timestamp forms, strictly: `YYYY-MM-DD HH:MM:SS` in UTC (the exports’ own
    form, so tried first: on ten years of orders 98% of the values, and a regular expression less
    for each of them), ISO 8601 with `Z` or an offset of at most 23:59, as hh:mm, hhmm or hh
    (seconds optional, and an optional fraction of up to nine digits, .NET exports write seven;
    kept to the millisecond),
    `DD/MM/YYYY HH:MM` in UTC (day first, never month first), each read into DateTime64 directly
    (through DateTime, `parseDateTimeOrNull`, a day-first date after 7 February 2106 wrapped round
    to 1970). Anything else, or an impossible date such as 30 February, is NULL. The patterns
    admit only months 01-12, days 01-31 and the years 1900-2299: the best-effort parser reads a
    month or day `00` as `01` and the year `0000` as the current year, so a zero date
    (`0000-00-00 00:00:00`, a common placeholder in exports) would otherwise land as 1 January
    of this year. Same cost as the looser patterns (3.05-3.27 CPU seconds for both timestamps of
    15.8M order rows, three interleaved runs).
    Then one bound for every form: a time must be after the Unix epoch (UTC, an offset
    included). The days taken from timestamps are `Date` (1970-2149), and `toDate` of an earlier
    DateTime64 wraps round (1965-03-02 became 2144-08-06); the epoch itself is a placeholder for
    a missing time, as the zero date is, and with no FX rate for its month an order or payment
    dated so would fail gold’s FX test and stop the marts. `greatest` lifts every earlier time
    to the epoch, which `nullIf` then drops. Years after the file’s day are `future_timestamp`. -#}
{% macro parse_timestamp(column) -%}
{%- set value = trim_space(column) -%}
{%- set date = date_patterns() -%}
{%- set hour_minute = '([01][0-9]|2[0-3]):[0-5][0-9]' -%}
{%- set epoch = "toDateTime64(0, 3, 'UTC')" -%}
nullIf(greatest(multiIf(
    match({{ value }}, '^{{ date.ymd }} {{ hour_minute }}:[0-5][0-9]$'),
        parseDateTime64BestEffortOrNull({{ value }}, 3, 'UTC'),
    match({{ value }}, '^{{ date.ymd }}T{{ hour_minute }}(:[0-5][0-9](\\.[0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)$'),
        parseDateTime64BestEffortOrNull({{ value }}, 3, 'UTC'),
    match({{ value }}, '^{{ date.day }}/{{ date.month }}/{{ date.year }} {{ hour_minute }}$'),
        toDateTime64(parseDateTime64OrNull({{ value }}, '%d/%m/%Y %H:%i', 'UTC'), 3, 'UTC'),
    null
), {{ epoch }}), {{ epoch }})
{%- endmacro %}

{#- The patterns of a date’s parts: months 01-12, days 01-31, the years of DateTime64 and Date32
    (1900-2299); `ymd` is `YYYY-MM-DD`. The parsers find the impossible days (30 February). -#}
{% macro date_patterns() -%}
{%- set parts = {'year': '(19[0-9]{2}|2[0-2][0-9]{2})', 'month': '(0[1-9]|1[0-2])',
                 'day': '(0[1-9]|[12][0-9]|3[01])'} -%}
{%- do parts.update({'ymd': parts.year ~ '-' ~ parts.month ~ '-' ~ parts.day}) -%}
{{ return(parts) }}
{%- endmacro %}

{#- A calendar date, `YYYY-MM-DD`, as Date32 (1900-2299): Date starts in 1970, and the
    engine’s `toDateOrNull` reads an earlier date as 1970-01-01 and 30 February as 2 March.
    Anything else is NULL. -#}
{% macro parse_date(column) -%}
if(
    match({{ trim_space(column) }}, '^{{ date_patterns().ymd }}$'),
    toDate32(parseDateTime64BestEffortOrNull({{ trim_space(column) }}, 0, 'UTC')),
    null
)
{%- endmacro %}

{#- A timestamp more than one day after the end of its file’s partition day. -#}
{% macro is_future(timestamp, file_date='_file_date') -%}
({{ timestamp }} > toDateTime64({{ file_date }}, 3, 'UTC') + interval 2 day)
{%- endmacro %}

{#- Money: digits with a dot as separator and at most `scale` decimals (zeros after them are
    fine: `10.990`), a sign allowed, surrounding spaces ignored, and below a billion (nine
    digits before the dot); anything else is NULL. The engine’s `toDecimal64OrNull` alone drops
    further decimals (`10.999` would be 10.99) and reads exponents (`1e3`). The bound keeps
    sums of money inside Decimal(18, 2), 16 digits before the dot: an order’s or a day’s
    revenue, a product’s over all history (its cost over all history, units sold times a cost,
    is Decimal(38, 2) in mart_product_performance). Beyond it, one absurd value (a barcode pasted into a price, say) would stop
    the whole build with DECIMAL_OVERFLOW, and every later run too, since bronze keeps the row. -#}
{% macro parse_decimal(column, scale=2) -%}
if(
    match({{ trim_space(column) }}, '^[+-]?([0-9]{1,9}|[0-9]{0,9}\\.[0-9]{1,{{ scale }}}0*)$'),
    toDecimal64OrNull({{ trim_space(column) }}, {{ scale }}),
    null
)
{%- endmacro %}

{% macro parse_integer(column) -%}
toInt32OrNull({{ trim_space(column) }})
{%- endmacro %}

{#- true/false/1/0/yes/no/t/f/y/n in any case; anything else NULL (an empty value too). -#}
{% macro parse_bool(column) -%}
multiIf(
    lowerUTF8({{ trim_space(column) }}) in ('true', '1', 'yes', 't', 'y'), true,
    lowerUTF8({{ trim_space(column) }}) in ('false', '0', 'no', 'f', 'n'), false,
    null
)
{%- endmacro %}

{#- Codes and statuses: trimmed, lower-cased, each inner run of spaces and hyphens to one
    underscore. -#}
{% macro clean_code(column) -%}
replaceRegexpAll(lowerUTF8({{ trim_space(column) }}), '[ -]+', '_')
{%- endmacro %}

{% macro nullif_blank(column) -%}
nullIf({{ trim_space(column) }}, '')
{%- endmacro %}

{#- Currency: trimmed, upper-cased, symbols mapped through the currency seed; '' when unknown. -#}
{% macro currency_lookup() -%}
(
    select (groupArray(raw_value), groupArray(currency_code))
    from (
        select currency_code as raw_value, currency_code from {{ ref('currencies') }}
        union all
        select symbol as raw_value, currency_code from {{ ref('currencies') }} where symbol != ''
    )
)
{%- endmacro %}

{#- The first month of each currency’s FX rates (seeds/fx_rates_monthly.csv), as (currencies,
    months): gold converts an amount at the rate of its month or the latest earlier one. -#}
{% macro fx_first_month_lookup() -%}
(
    select (groupArray(toString(currency)), groupArray(first_month))
    from (
        select currency, min(month) as first_month
        from {{ ref('fx_rates_monthly') }}
        group by currency
    )
)
{%- endmacro %}

{#- A timestamp before the first month of its currency’s FX rates: no USD amount can be computed
    for it, and a real order of the retailer’s is not that old (a placeholder such as
    2001-01-01 is). A currency without any rate is gold’s tests’ to report, not a timestamp’s
    fault. NULL (a false condition in multiIf) when the timestamp is NULL. -#}
{% macro before_fx_rates(timestamp, currency='currency_code', lookup='fx_first_month') -%}
(toStartOfMonth({{ timestamp }}) < transform(toString({{ currency }}), {{ lookup }}.1, {{ lookup }}.2, toDate(0)))
{%- endmacro %}

{% macro to_currency(column, lookup='currency_map') -%}
transform(upperUTF8({{ trim_space(column) }}), {{ lookup }}.1, {{ lookup }}.2, '')
{%- endmacro %}

{#- Each country's currency (the countries seed), as (countries, currencies). -#}
{% macro country_currency_lookup() -%}
(select (groupArray(country_code), groupArray(currency_code)) from {{ ref('countries') }})
{%- endmacro %}

{#- The currencies of the seed other than USD that are written `$` too. -#}
{% macro other_dollar_currencies() -%}
('CAD', 'MXN')
{%- endmacro %}

{#- An order's currency: its code or symbol through the currency seed, which reads `$` as USD,
    except that an order shipped to a country whose currency is also written `$` (Canada's CAD,
    Mexico's MXN) is priced in that currency (SPEC 4: an order is priced in its shipping
    country's currency). `country` is the cleaned alpha-2 code. -#}
{% macro order_currency(column, country, lookup='currency_map', countries='country_currency') -%}
if(
    {{ trim_space(column) }} = '$'
        and transform({{ country }}, {{ countries }}.1, {{ countries }}.2, '') in {{ other_dollar_currencies() }},
    transform({{ country }}, {{ countries }}.1, {{ countries }}.2, ''),
    {{ to_currency(column, lookup) }}
)
{%- endmacro %}

{#- Country: alpha-2, alpha-3 or English name in any case to alpha-2 through the seed; 'ZZ' when unknown. -#}
{% macro country_lookup() -%}
(
    select (groupArray(raw_value), groupArray(country_code))
    from (
        select country_code as raw_value, country_code from {{ ref('countries') }}
        union all
        select alpha3 as raw_value, country_code from {{ ref('countries') }}
        union all
        select upperUTF8(country_name) as raw_value, country_code from {{ ref('countries') }}
    )
)
{%- endmacro %}

{% macro to_country(column, lookup='country_map') -%}
transform(upperUTF8({{ trim_space(column) }}), {{ lookup }}.1, {{ lookup }}.2, 'ZZ')
{%- endmacro %}

{#- A lower-cased address: letters, digits, ._%+- and the apostrophe (\x27, common in the names
    of the retailer’s Irish and British customers) before the @, a domain with a dot. -#}
{% macro valid_email(email) -%}
match({{ email }}, '^[a-z0-9._%+\\x27-]+@[a-z0-9-]+(\\.[a-z0-9-]+)*\\.[a-z]{2,}$')
{%- endmacro %}
