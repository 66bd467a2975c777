-- Serving lookups by user_id as of the newest loaded day: the user columns of the spec and
-- the aggregates training_examples computes, over the windows ending with that day.

{%- set entity = 'user' -%}
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

    select * from {{ ref('dim_users') }}

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
