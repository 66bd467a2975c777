{#-
  The models of an entity (`user` or `item`) share one shape whatever the source; these
  macros are their bodies, written once for both entities (the repeated pieces of the
  project: each model file names its entity, its config and its grain, and its YAML
  documents and tests it). An entity the source has no ids for (var `has_<entity>_id`
  false) yields zero rows with the same columns: its ids are null in fct_events.
-#}

{% macro entity_daily_activity(entity) %}
    {#- Returns the select of int_<entity>_daily_activity: one row per id and day of the
        partition window, from the staged events of the window: `<entity>_id`, the role columns as of the
        day's latest event, `first_seen_at`, `last_seen_at`, `last_event_id`, `events`,
        `positives`, `event_date`. -#}
    {%- set id = entity ~ '_id' -%}
    {%- set role_columns = feature_spec()['role_columns'][entity] %}
with

events as (

    select
        {{ id }},
        event_date,
        event_ts,
        event_id,
        is_positive
        {%- for column in role_columns %},
        {{ column }}
        {%- endfor %}

    from {{ ref('stg_bronze__events') }}
    where {{ id }} is not null
        and {{ partition_window_filter('event_date') }}

),

latest_of_day as (

    select
        events.*,
        row_number() over (
            partition by {{ id }}, event_date
            order by event_ts desc, event_id desc
        ) as recency_rank

    from events

),

activity as (

    select
        {{ id }},
        event_date,
        min(event_ts) as first_seen_at,
        max(event_ts) as last_seen_at,
        count(*) as events,
        sum(is_positive) as positives

    from events
    group by {{ id }}, event_date

)

select
    activity.{{ id }},
    {%- for column in role_columns %}
    latest_of_day.{{ column }},
    {%- endfor %}
    activity.first_seen_at,
    activity.last_seen_at,
    latest_of_day.event_id as last_event_id,
    cast(activity.events as bigint) as events,
    cast(activity.positives as bigint) as positives,
    activity.event_date

from activity
inner join latest_of_day
    on activity.{{ id }} = latest_of_day.{{ id }}
    and activity.event_date = latest_of_day.event_date
    and latest_of_day.recency_rank = 1
{%- endmacro %}


{% macro entity_dimension(entity) %}
    {#- Returns the select of dim_<entity>s: one row per id ever seen, from
        int_<entity>_daily_activity: `<entity>_id`, the role columns of its latest event,
        `first_seen_at`, `last_seen_at`, `events`, `positives`. An incremental run
        recomputes only the ids the window touches: those active in it now, and those
        whose stored row may hold days of it (last seen on or after its start). -#}
    {%- set id = entity ~ '_id' -%}
    {%- set role_columns = feature_spec()['role_columns'][entity] -%}
    {%- set window = partition_window() -%}
    {%- set daily_table = ref('int_' ~ entity ~ '_daily_activity') %}
with

{% if is_incremental() and 'min_date' in window -%}
touched_ids as (

    select {{ id }} from {{ daily_table }}
    where {{ partition_window_filter('event_date') }}

    union

    select {{ id }} from {{ this }}
    where last_seen_at >= {{ partition_date_literal(window['min_date'], 'date') }}

),

{% endif -%}
daily_activity as (

    select * from {{ daily_table }}
    {%- if is_incremental() and 'min_date' in window %}
    where {{ id }} in (select {{ id }} from touched_ids)
    {%- endif %}

),

latest_day as (

    select
        daily_activity.*,
        row_number() over (
            partition by {{ id }}
            order by last_seen_at desc, last_event_id desc
        ) as recency_rank

    from daily_activity

),

lifetime as (

    select
        {{ id }},
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        sum(events) as events,
        sum(positives) as positives

    from daily_activity
    group by {{ id }}

)

select
    lifetime.{{ id }},
    {%- for column in role_columns %}
    latest_day.{{ column }},
    {%- endfor %}
    lifetime.first_seen_at,
    lifetime.last_seen_at,
    cast(lifetime.events as bigint) as events,
    cast(lifetime.positives as bigint) as positives

from lifetime
inner join latest_day
    on lifetime.{{ id }} = latest_day.{{ id }}
    and latest_day.recency_rank = 1
{%- endmacro %}


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


{% macro entity_serving_features(entity) %}
    {#- Returns the select of <entity>_features: one row per id of dim_<entity>s as of the
        newest day in fct_events, with the role columns of its latest event, the
        aggregates of training_examples over the windows ending with that day (the
        values an event just after its end would get) and, for users when the source has
        both ids, `user_history`: the user's newest positive items within the longest
        window, newest first. Reads only the longest window's days of fct_events. -#}
    {%- set spec = feature_spec() -%}
    {%- set id = entity ~ '_id' -%}
    {%- set newest_day = newest_event_date() -%}
    {%- set with_history = entity == 'user' and spec['has_history'] %}
with

recent_events as (

    select
        {{ id }},
        item_id,
        event_id,
        event_ts,
        event_date,
        is_positive

    from {{ ref('fct_events') }}
    where {{ id }} is not null
    {%- if newest_day is none %}
        and 1 = 0
    {%- else %}
        and event_date >= {{ partition_date_literal(newest_day - modules.datetime.timedelta(days=spec['horizon_days'] - 1), 'date') }}
        and event_date <= {{ partition_date_literal(newest_day, 'date') }}
    {%- endif %}

),

window_counts as (

    select
        {{ id }}
        {%- for days in spec['windows_days'] %}
        {%- set in_window = 'event_date >= ' ~ partition_date_literal(
            (newest_day or modules.datetime.date(1970, 1, 1)) - modules.datetime.timedelta(days=days - 1), 'date') %},
        sum(case when {{ in_window }} then 1 else 0 end) as events_{{ days }}d,
        sum(case when {{ in_window }} then is_positive else 0 end) as positives_{{ days }}d
        {%- endfor %}

    from recent_events
    group by {{ id }}

),

{% if with_history -%}
ranked_positives as (

    select
        user_id,
        item_id,
        row_number() over (
            partition by user_id
            order by event_ts desc, event_id desc
        ) as history_slot

    from recent_events
    where is_positive = 1

),

histories as (

    select
        user_id,
        {{ ordered_string_list('item_id', 'history_slot') }} as user_history

    from ranked_positives
    where history_slot <= {{ spec['history_length'] }}
    group by user_id

),

{% endif -%}
known_ids as (

    select * from {{ ref('dim_' ~ entity ~ 's') }}

)

select
    known_ids.{{ id }},
    {%- for column in spec['role_columns'][entity] %}
    known_ids.{{ column }},
    {%- endfor %}
    {%- for days in spec['windows_days'] %}
    {%- set events = 'coalesce(window_counts.events_' ~ days ~ 'd, 0)' %}
    {%- set positives = 'coalesce(window_counts.positives_' ~ days ~ 'd, 0)' %}
    cast({{ events }} as bigint) as {{ entity }}_events_{{ days }}d,
    cast({{ positives }} as bigint) as {{ entity }}_positives_{{ days }}d,
    {{ positive_rate(positives, events) }} as {{ entity }}_positive_rate_{{ days }}d
    {%- if not loop.last or with_history %},{% endif %}
    {%- endfor %}
    {%- if with_history %}
    coalesce(histories.user_history, {{ empty_string_list() }}) as user_history
    {%- endif %}

from known_ids
left join window_counts
    on known_ids.{{ id }} = window_counts.{{ id }}
{%- if with_history %}
left join histories
    on known_ids.user_id = histories.user_id
{%- endif %}
{%- endmacro %}


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
