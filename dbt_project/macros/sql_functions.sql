{#-
  Timestamp parts whose spelling differs between engines. The default implementations are
  ANSI-style and serve DuckDB (and Postgres); Spark gets its own.
-#}

{% macro epoch_seconds(ts) %}
    {#- Returns the bigint whole seconds since 1970-01-01 00:00:00 of the timestamp `ts`. -#}
    {{ return(adapter.dispatch('epoch_seconds')(ts)) }}
{% endmacro %}

{% macro default__epoch_seconds(ts) -%}
    cast(floor(extract(epoch from {{ ts }})) as bigint)
{%- endmacro %}

{% macro spark__epoch_seconds(ts) -%}
    unix_seconds(cast({{ ts }} as timestamp))
{%- endmacro %}


{% macro epoch_microseconds(ts) %}
    {#- Returns the bigint microseconds since 1970-01-01 00:00:00 of the timestamp `ts`
        (exact, so it can order events that share a second). -#}
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
    {#- Returns the int day of week of the timestamp `ts`, Monday = 0 .. Sunday = 6. -#}
    {{ return(adapter.dispatch('day_of_week_monday_zero')(ts)) }}
{% endmacro %}

{% macro default__day_of_week_monday_zero(ts) -%}
    {#- extract(dow) counts Sunday = 0 .. Saturday = 6 -#}
    cast(mod(cast(extract(dow from {{ ts }}) as int) + 6, 7) as int)
{%- endmacro %}

{% macro spark__day_of_week_monday_zero(ts) -%}
    weekday({{ ts }})
{%- endmacro %}
