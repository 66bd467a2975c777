-- One row per event of the partition window with its point-in-time features. For each
-- entity the source has ids for and each window of `windows_days`, the entity's events,
-- positives and smoothed positive rate over [event_ts - window, event_ts): the frames are
-- numeric ranges over epoch microseconds ending `1 preceding`, so no event counts itself
-- nor anything at its own timestamp or later. `user_history` lists the user's newest
-- positive items before the event within the longest window. History comes from
-- fct_events, read from the longest window before the partition window; only the
-- window's rows are written.

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

{%- for entity in spec['entities'] %}

{{ entity }}_trailing as (

    -- the windows run over a narrow projection (id, time, positive) and are joined back
    -- by event_id: a window operator holds its rows in memory, a join can spill them
    select
        event_id
        {%- for days in spec['windows_days'] %},
        count(*) over {{ entity }}_{{ days }}d as {{ entity }}_events_{{ days }}d,
        coalesce(sum(is_positive) over {{ entity }}_{{ days }}d, 0) as {{ entity }}_positives_{{ days }}d
        {%- endfor %}

    from (
        select event_id, {{ entity }}_id, event_epoch_us, is_positive from events_with_history
    ) as {{ entity }}_events
    window
        {%- for days in spec['windows_days'] %}
        {{ entity }}_{{ days }}d as (
            partition by {{ entity }}_id
            order by event_epoch_us
            range between {{ days_in_microseconds(days) }} preceding and 1 preceding
        ){% if not loop.last %},{% endif %}
        {%- endfor %}

),
{%- endfor %}
{%- if spec['has_history'] %}

positives_before as (

    -- the user's positives strictly before the event since the start of the history read
    select
        event_id,
        coalesce(sum(is_positive) over (
            partition by user_id
            order by event_epoch_us
            range between unbounded preceding and 1 preceding
        ), 0) as user_positives_before

    from (select event_id, user_id, event_epoch_us, is_positive from events_with_history) as user_events

),
{%- endif %}

window_events as (

    select
        events_with_history.*
        {%- for entity in spec['entities'] %}
        {%- for days in spec['windows_days'] %},
        {{ entity }}_trailing.{{ entity }}_events_{{ days }}d,
        {{ entity }}_trailing.{{ entity }}_positives_{{ days }}d
        {%- endfor %}
        {%- endfor %}
        {%- if spec['has_history'] %},
        positives_before.user_positives_before
        {%- endif %}

    from events_with_history
    {%- for entity in spec['entities'] %}
    inner join {{ entity }}_trailing
        on events_with_history.event_id = {{ entity }}_trailing.event_id
    {%- endfor %}
    {%- if spec['has_history'] %}
    inner join positives_before
        on events_with_history.event_id = positives_before.event_id
    {%- endif %}
    where {{ partition_window_filter('events_with_history.event_date') }}

){% if spec['has_history'] %},

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

history_slots as (

    -- slot 1 is the newest positive before the event, slot history_length the oldest kept
    select
        window_events.event_id,
        window_events.user_id,
        window_events.event_epoch_us,
        slots.history_slot,
        window_events.user_positives_before - slots.history_slot + 1 as positive_number

    from window_events
    inner join ({{ integer_series(spec['history_length'], 'history_slot') }}) as slots
        on slots.history_slot <= window_events.user_positives_before

),

histories as (

    select
        history_slots.event_id,
        {{ ordered_string_list('numbered_positives.item_id', 'history_slots.history_slot') }} as user_history

    from history_slots
    inner join numbered_positives
        on history_slots.user_id = numbered_positives.user_id
        and history_slots.positive_number = numbered_positives.positive_number
    where numbered_positives.event_epoch_us >= history_slots.event_epoch_us - {{ horizon_microseconds }}
    group by history_slots.event_id

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
    coalesce(histories.user_history, {{ empty_string_list() }}) as user_history
    {%- endif %}

from window_events
{%- if spec['has_history'] %}
left join histories
    on window_events.event_id = histories.event_id
{%- endif %}
