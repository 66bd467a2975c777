{#-
  The partition window of a run comes from two vars, each a `YYYY-MM-DD` date or null:
  `min_date` (inclusive) and `max_date` (exclusive). A null bound is unbounded, so a run
  without vars covers every loaded day.
-#}

{% macro partition_window() %}
    {#- Returns a dict holding the validated bounds that are set, as `datetime.date`s:
        `min_date` and/or `max_date` (an empty dict when neither var is given). -#}
    {%- set window = {} -%}
    {%- for name in ['min_date', 'max_date'] -%}
        {%- set value = var(name, none) -%}
        {%- if value is not none -%}
            {%- do window.update({name: parse_partition_date(name, value)}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if 'min_date' in window and 'max_date' in window and window['min_date'] >= window['max_date'] -%}
        {{ exceptions.raise_compiler_error(
            "var 'min_date' (" ~ window['min_date'] ~ ") must be before var 'max_date' ("
            ~ window['max_date'] ~ "): the window is [min_date, max_date)"
        ) }}
    {%- endif -%}
    {{ return(window) }}
{% endmacro %}


{% macro parse_partition_date(name, value) %}
    {#- Returns `value` (a `YYYY-MM-DD` string, or a date that YAML already parsed) as a
        `datetime.date`; raises a compiler error naming the var `name` otherwise. -#}
    {%- set text = value | string -%}
    {%- if not modules.re.match('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$', text) -%}
        {{ exceptions.raise_compiler_error(
            "var '" ~ name ~ "' must be a YYYY-MM-DD date or null, got '" ~ text ~ "'"
        ) }}
    {%- endif -%}
    {{ return(modules.datetime.date.fromisoformat(text)) }}
{% endmacro %}


{% macro partition_window_filter(column, lookback_days=0, compare_as='date') %}
    {#- Returns a SQL predicate keeping the rows of `column` inside the partition window,
        with the window start moved `lookback_days` earlier (for models that need history).
        `compare_as` is 'date' for a date column or 'string' for a `YYYY-MM-DD` string
        column such as the hive partition `dt` (a bare literal keeps partition pruning).
        Returns `1 = 1` when the window is unbounded. -#}
    {%- if compare_as not in ['date', 'string'] -%}
        {{ exceptions.raise_compiler_error(
            "partition_window_filter: compare_as must be 'date' or 'string', got '" ~ compare_as ~ "'"
        ) }}
    {%- endif -%}
    {%- set window = partition_window() -%}
    {%- set conditions = [] -%}
    {%- if 'min_date' in window -%}
        {%- set start = window['min_date'] - modules.datetime.timedelta(days=lookback_days) -%}
        {%- do conditions.append(column ~ ' >= ' ~ partition_date_literal(start, compare_as)) -%}
    {%- endif -%}
    {%- if 'max_date' in window -%}
        {%- do conditions.append(column ~ ' < ' ~ partition_date_literal(window['max_date'], compare_as)) -%}
    {%- endif -%}
    {{ return(conditions | join(' and ') if conditions else '1 = 1') }}
{% endmacro %}


{% macro partition_date_literal(day, compare_as) %}
    {#- Returns the SQL literal of the `datetime.date` `day`, as a date or a string. -#}
    {%- set text = "'" ~ day.isoformat() ~ "'" -%}
    {{ return('cast(' ~ text ~ ' as date)' if compare_as == 'date' else text) }}
{% endmacro %}


{% macro delete_partition_window(column) %}
    {#- Pre-hook for incremental models partitioned by the date `column`: on an incremental
        run, deletes the target rows inside the partition window, so the run replaces its
        window exactly (rows that vanished from a re-delivered day do not linger). Renders
        nothing on a full build. -#}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ partition_window_filter(column) }}
    {%- endif -%}
{% endmacro %}


{% macro validated_lookback_days() %}
    {#- Returns the `lookback_days` var, checked to be a whole number of days >= 1. -#}
    {%- set days = var('lookback_days') -%}
    {%- if days is not number or days != days | int or days < 1 -%}
        {{ exceptions.raise_compiler_error(
            "var 'lookback_days' must be a whole number of days >= 1, got '" ~ days ~ "'"
        ) }}
    {%- endif -%}
    {{ return(days | int) }}
{% endmacro %}
