{#-
  The partition window of a run: `min_date` (inclusive) and `max_date` (exclusive), each a
  `YYYY-MM-DD` date or null. Each comes from the var of that name, or, when the var is null,
  from the env var RECLAKE_DBT_MIN_DATE / RECLAKE_DBT_MAX_DATE (empty or unset is null).
  A null bound is unbounded, so a run without either covers every loaded day.

  The pipeline passes the window as env vars and reads them only when models run, never
  while dbt parses: the vars then stay the same from one run to the next, and dbt's
  partial parsing skips the full parse that a change of vars forces.
-#}

{% macro partition_window() %}
    {#- Returns a dict holding the validated bounds that are set, as `datetime.date`s:
        `min_date` and/or `max_date` (an empty dict when neither var is given). -#}
    {%- set window = {} -%}
    {%- for name in ['min_date', 'max_date'] -%}
        {%- set value, given_as = var(name, none), "var '" ~ name ~ "'" -%}
        {%- if value is none and execute -%}
            {%- set value = env_var('RECLAKE_DBT_' ~ name | upper, '') or none -%}
            {%- set given_as = "env var 'RECLAKE_DBT_" ~ name | upper ~ "'" -%}
        {%- endif -%}
        {%- if value is not none -%}
            {%- do window.update({name: parse_partition_date(given_as, value)}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if 'min_date' in window and 'max_date' in window and window['min_date'] >= window['max_date'] -%}
        {{ exceptions.raise_compiler_error(
            "min_date (" ~ window['min_date'] ~ ") must be before max_date ("
            ~ window['max_date'] ~ "): the window is [min_date, max_date)"
        ) }}
    {%- endif -%}
    {{ return(window) }}
{% endmacro %}


{% macro parse_partition_date(given_as, value) %}
    {#- Returns `value` (a `YYYY-MM-DD` string, or a date that YAML already parsed) as a
        `datetime.date`; raises a compiler error naming where it came from, `given_as`
        (such as "var 'min_date'"), otherwise. -#}
    {%- set text = value | string -%}
    {%- if not modules.re.match('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$', text) -%}
        {{ exceptions.raise_compiler_error(
            given_as ~ " must be a YYYY-MM-DD date or null, got '" ~ text ~ "'"
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
    {#- Pre-hook of the models partitioned by the date `column`: on an incremental run,
        returns the statement that deletes the target's rows inside the partition window,
        so that appending the window's rows afterwards replaces those days exactly (rows
        that vanished from a re-delivered day do not linger). Returns nothing on a full
        build. -#}
    {%- if is_incremental() -%}
        {{ return(adapter.dispatch('delete_partition_window')(column)) }}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}

{% macro default__delete_partition_window(column) -%}
    {{ return('delete from ' ~ this ~ ' where ' ~ partition_window_filter(column)) }}
{%- endmacro %}

{% macro spark__delete_partition_window(column) -%}
    {#- Parquet tables cannot delete rows: drop the window's partitions of `column`
        instead (the model is `partition_by` that column). `show partitions` lists the
        days present, so only those are named, whatever the window's width. -#}
    {%- set window = partition_window() -%}
    {%- set window_partitions = [] -%}
    {%- for row in run_query('show partitions ' ~ this) -%}
        {%- set day = modules.datetime.date.fromisoformat(row[0].split('=', 1)[1]) -%}
        {%- if ('min_date' not in window or day >= window['min_date'])
              and ('max_date' not in window or day < window['max_date']) -%}
            {%- do window_partitions.append("partition (" ~ column ~ " = date'" ~ day.isoformat() ~ "')") -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return('alter table ' ~ this ~ ' drop if exists ' ~ window_partitions | join(', ') if window_partitions else '') }}
{%- endmacro %}


{% macro get_where_subquery(relation) -%}
    {#- Overrides dbt's: a data test configured with `where: "__partition_window__"`
        checks only the rows of the run's partition window (by `event_date`), so the
        tests of incremental tables cost the same whatever their history. Any other
        `where` is applied as written. -#}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set where = where | replace('__partition_window__', partition_window_filter('event_date')) -%}
        {{ return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}
