-- One row per event of the partition window with its point-in-time features. For each
-- entity the source has ids for and each window of `windows_days`, the entity's events,
-- positives and smoothed positive rate over [event_ts - window, event_ts): nothing at the
-- event's own timestamp or later counts (macros/trailing_counts.sql). `user_history`
-- lists the user's newest positive items before the event within the longest window,
-- newest first. History comes from fct_events, read from the longest window before the
-- partition window; only the window's rows are written.

{{ config(**partition_window_config()) }}

{%- set spec = feature_spec() %}
{%- set horizon_microseconds = days_in_microseconds(spec['horizon_days']) %}

with

events_with_history as (

    select
        event_id,
        event_date,
        event_ts,
        user_id,
        item_id,
        {%- for column in spec['feature_columns'] %}
        {{ column['name'] }},
        {%- endfor %}
        hour_of_day,
        day_of_week,
        {%- for name in spec['label_columns'] %}
        {{ name }},
        {%- endfor %}
        label,
        is_positive,
        {{ epoch_microseconds('event_ts') }} as event_epoch_us

    from {{ ref('fct_events') }}
    where {{ partition_window_filter('event_date', lookback_days=spec['horizon_days']) }}

),

{{ trailing_counts(spec) }}{% if spec['has_history'] %},

numbered_positives as (

    -- every positive of the history read, numbered per user oldest first: an event's
    -- `user_positives_before` newest positives are numbers 1 .. user_positives_before
    select
        user_id,
        item_id,
        event_epoch_us,
        row_number() over (
            partition by user_id
            order by event_epoch_us, event_id
        ) as positive_number

    from events_with_history
    where is_positive = 1

),

recent_positives as (

    -- per positive: it and the user's positives before it, history_length in all, oldest
    -- first; an event's history is the list of its user's number user_positives_before
    select
        user_id,
        positive_number,
        {{ positives_up_to_row('user_id', 'positive_number', spec['history_length']) }} as positives

    from numbered_positives

){% endif %}

select
    window_events.event_id,
    window_events.event_date,
    window_events.event_ts,
    window_events.user_id,
    window_events.item_id,
    {%- for column in spec['feature_columns'] %}
    window_events.{{ column['name'] }},
    {%- endfor %}
    window_events.hour_of_day,
    window_events.day_of_week,
    {%- for name in spec['label_columns'] %}
    window_events.{{ name }},
    {%- endfor %}
    window_events.label,
    window_events.is_positive
    {%- for entity in spec['entities'] %}
    {%- for days in spec['windows_days'] %}
    {%- set events = 'window_events.' ~ entity ~ '_events_' ~ days ~ 'd' %}
    {%- set positives = 'window_events.' ~ entity ~ '_positives_' ~ days ~ 'd' %},
    cast({{ events }} as bigint) as {{ entity }}_events_{{ days }}d,
    cast({{ positives }} as bigint) as {{ entity }}_positives_{{ days }}d,
    {{ positive_rate(positives, events) }} as {{ entity }}_positive_rate_{{ days }}d
    {%- endfor %}
    {%- endfor %}
    {%- if spec['has_history'] %},
    coalesce(
        {{ history_items_since('recent_positives.positives', 'window_events.event_epoch_us - ' ~ horizon_microseconds) }},
        {{ empty_string_list() }}
    ) as user_history
    {%- endif %}

from window_events
{%- if spec['has_history'] %}
left join recent_positives
    on window_events.user_id = recent_positives.user_id
    and window_events.user_positives_before = recent_positives.positive_number
{%- endif %}
