-- One row per user and day of the partition window: the day's events and positives, first
-- and last event, and the user columns of the spec as of the day's last event. The compact
-- history dim_users is recomputed from; built by window, from the staged events of the window.

{{ config(**partition_window_config()) }}

{%- set entity = 'user' -%}
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
