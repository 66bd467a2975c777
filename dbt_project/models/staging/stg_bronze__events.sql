-- One row per bronze event of the partition window, typed per the data contract, plus the
-- parts of event_ts the features use, the label and whether the event is a positive
-- interaction. The `dt` filter runs on the hive path, so only the window's day folders
-- are read; models that need history before the window read it from fct_events.

{%- set spec = feature_spec() %}

with

source as (

    select * from {{ source('bronze', 'events') }}
    where {{ partition_window_filter('dt', compare_as='string') }}

),

typed as (

    select
        {%- for name, sql_type in canonical_columns().items() %}
        {%- if name in ('user_id', 'item_id') and not var('has_' ~ name) %}
        {#- The spec has no such id (e.g. iPinYou's sparse user ids): not an entity here. #}
        cast(null as {{ sql_type }}) as {{ name }},
        {%- else %}
        cast({{ name }} as {{ sql_type }}) as {{ name }},
        {%- endif %}
        {%- endfor %}
        {%- for column in spec['extra_columns'] %}
        cast({{ column['name'] }} as {{ column['sql_type'] }}) as {{ column['name'] }},
        {%- endfor %}
        cast(dt as date) as event_date

    from source

)

select
    typed.*,
    cast(extract(hour from typed.event_ts) as bigint) as hour_of_day,
    cast({{ day_of_week_monday_zero('typed.event_ts') }} as bigint) as day_of_week,
    cast(typed.{{ spec['label_column'] }} as double) as label,
    cast(case when typed.{{ spec['label_column'] }} >= {{ spec['positive_threshold'] }} then 1 else 0 end as int)
        as is_positive

from typed
