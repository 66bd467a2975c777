-- One row per user ever seen: the user columns of the spec as of its latest event,
-- first and last event, lifetime events and positives (zero rows when the source has no
-- user ids). Incremental: a run recomputes only the users its window touches.

{{ config(**entity_dimension_config('user')) }}

{%- set entity = 'user' -%}
{%- set id = entity ~ '_id' -%}
{%- set role_columns = feature_spec()['role_columns'][entity] -%}
{%- set window = partition_window() -%}
{%- set daily_table = ref('int_user_daily_activity') %}
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
