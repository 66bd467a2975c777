{#-
  Timestamp parts whose spelling differs between engines. The default implementations are
  ANSI-style and serve DuckDB (and Postgres); Spark gets its own.
-#}

{% macro epoch_microseconds(ts) %}
    {#- Returns the bigint microseconds since 1970-01-01 00:00:00 of the timestamp `ts`
        (exact, so it orders events that share a second). -#}
    {{ return(adapter.dispatch('epoch_microseconds')(ts)) }}
{% endmacro %}

{% macro default__epoch_microseconds(ts) -%}
    cast(extract(epoch from {{ ts }}) * 1000000 as bigint)
{%- endmacro %}

{% macro duckdb__epoch_microseconds(ts) -%}
    epoch_us({{ ts }})
{%- endmacro %}

{% macro spark__epoch_microseconds(ts) -%}
    unix_micros(cast({{ ts }} as timestamp))
{%- endmacro %}


{% macro day_of_week_monday_zero(ts) %}
    {#- Returns the day of week of the timestamp `ts`, Monday = 0 .. Sunday = 6. -#}
    {{ return(adapter.dispatch('day_of_week_monday_zero')(ts)) }}
{% endmacro %}

{% macro default__day_of_week_monday_zero(ts) -%}
    {#- extract(dow) counts Sunday = 0 .. Saturday = 6 -#}
    mod(cast(extract(dow from {{ ts }}) as int) + 6, 7)
{%- endmacro %}

{% macro spark__day_of_week_monday_zero(ts) -%}
    weekday({{ ts }})
{%- endmacro %}


{% macro days_in_microseconds(days) %}
    {#- Returns the integer number of microseconds in `days` days: the width of a range
        frame over `epoch_microseconds`. -#}
    {{ return(days * 86400 * 1000000) }}
{% endmacro %}
