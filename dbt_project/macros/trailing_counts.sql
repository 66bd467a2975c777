{#-
  The point-in-time counts of training_examples, whose fastest exact form differs between
  engines. Both return the CTEs ending in `window_events`: the rows of `events_with_history`
  inside the partition window, with, for each entity of the spec and each window w of
  `windows_days`, `<entity>_events_<w>d` and `<entity>_positives_<w>d` over
  [event_ts - w, event_ts), and (with `has_history`) `user_positives_before`: the user's
  positives strictly before the event since the start of the history read.
  `events_with_history` must hold `event_id`, the entity ids, `event_epoch_us` and
  `is_positive`.
-#}

{% macro trailing_counts(spec) %}
    {{ return(adapter.dispatch('trailing_counts')(spec)) }}
{% endmacro %}


{% macro default__trailing_counts(spec) -%}
{#- Range frames over epoch microseconds ending `1 preceding`, so no event counts itself
    nor anything at its own timestamp or later. The windows run over a narrow projection
    (id, time, positive) and are joined back by event_id: a window operator holds its rows
    in memory, a join can spill them. -#}
{%- for entity in spec['entities'] %}
{{ entity }}_trailing as (

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

)
{%- endmacro %}


{% macro duckdb__trailing_counts(spec) -%}
{#- Differences of running totals: an entity's events over [t - w, t) are its events
    before t less its events before t - w. `<entity>_steps` holds, per entity and distinct
    event time, the running events and positives through that time; an ASOF join finds the
    newest step strictly before t (and before t - w). Sorts and joins only, which spill,
    where bounded range frames over a popular item's events are slow and held in memory. -#}
{%- for entity in spec['entities'] %}
{{ entity }}_steps as (

    select
        {{ entity }}_id,
        event_epoch_us,
        sum(count(*)) over running as events_through,
        sum(sum(is_positive)) over running as positives_through

    from events_with_history
    group by {{ entity }}_id, event_epoch_us
    window running as (
        partition by {{ entity }}_id
        order by event_epoch_us
        rows between unbounded preceding and current row
    )

),
{%- endfor %}

window_events as (

    select
        window_rows.*
        {%- for entity in spec['entities'] %}
        {%- for days in spec['windows_days'] %},
        coalesce({{ entity }}_before.events_through, 0)
            - coalesce({{ entity }}_before_{{ days }}d.events_through, 0) as {{ entity }}_events_{{ days }}d,
        coalesce({{ entity }}_before.positives_through, 0)
            - coalesce({{ entity }}_before_{{ days }}d.positives_through, 0) as {{ entity }}_positives_{{ days }}d
        {%- endfor %}
        {%- endfor %}
        {%- if spec['has_history'] %},
        coalesce(user_before.positives_through, 0) as user_positives_before
        {%- endif %}

    from (
        select * from events_with_history where {{ partition_window_filter('event_date') }}
    ) as window_rows
    {%- for entity in spec['entities'] %}
    asof left join {{ entity }}_steps as {{ entity }}_before
        on window_rows.{{ entity }}_id = {{ entity }}_before.{{ entity }}_id
        and window_rows.event_epoch_us > {{ entity }}_before.event_epoch_us
    {%- for days in spec['windows_days'] %}
    asof left join {{ entity }}_steps as {{ entity }}_before_{{ days }}d
        on window_rows.{{ entity }}_id = {{ entity }}_before_{{ days }}d.{{ entity }}_id
        and window_rows.event_epoch_us - {{ days_in_microseconds(days) }} > {{ entity }}_before_{{ days }}d.event_epoch_us
    {%- endfor %}
    {%- endfor %}

)
{%- endmacro %}
