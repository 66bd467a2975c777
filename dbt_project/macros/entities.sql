{#-
  Pieces the entity models (dim_users / dim_items, user_features / item_features) share:
  the pre-hook of an incremental dimension and the newest loaded day.
-#}

{% macro delete_vanished_ids(entity) %}
    {#- Pre-hook of an incremental dim_<entity>s: deletes the ids that may hold days of
        the window (last seen on or after its start) but have no daily activity left, e.g.
        every event of the id was withdrawn by a re-delivered day. The ids that still
        have activity are replaced by the run itself (delete+insert on the id). -#}
    {%- if not is_incremental() -%}
        {{ return('') }}
    {%- endif -%}
    {%- set id = entity ~ '_id' -%}
    {%- set window = partition_window() -%}
    {%- set conditions = [] -%}
    {%- if 'min_date' in window -%}
        {%- do conditions.append('last_seen_at >= ' ~ partition_date_literal(window['min_date'], 'date')) -%}
    {%- endif -%}
    {%- do conditions.append(id ~ ' not in (select ' ~ id ~ ' from ' ~ ref('int_' ~ entity ~ '_daily_activity') ~ ')') -%}
    {{ return('delete from ' ~ this ~ ' where ' ~ conditions | join(' and ')) }}
{% endmacro %}


{% macro newest_event_date() %}
    {#- Returns the newest `event_date` in fct_events as a date (queried when the model
        runs), or none while parsing or when fct_events is empty. -#}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set newest = run_query('select max(event_date) from ' ~ ref('fct_events')).columns[0].values()[0] -%}
    {%- if newest is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(modules.datetime.date.fromisoformat((newest | string)[:10])) }}
{% endmacro %}
