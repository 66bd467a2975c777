{#-
  How each kind of model is stored, per engine. Models call `config(**...)` with these, so
  the SQL of a model stays the same on every engine.

  Partition-window models (one row per event or per id and day, column `event_date`):
  an incremental run deletes the window's days (pre-hook `delete_partition_window`),
  then appends the window's rows. On DuckDB that is a `delete` and an `append`; on Spark
  the table is a Parquet table partitioned by `event_date`, the pre-hook drops the
  window's partitions and the rows are appended. Either way a run touches only its
  window, re-running a day replaces it, and a day whose rows all vanished is emptied.

  Entity dimensions (one row per id): on DuckDB an incremental `delete+insert` on the id
  that recomputes only the ids the window touched; on Spark, Parquet tables cannot
  update rows, so the dimension is rebuilt from the (compact) daily activity table.
-#}

{% macro partition_window_config() %}
    {#- Returns the config of a model partitioned by `event_date` and built by window. -#}
    {{ return(adapter.dispatch('partition_window_config')()) }}
{% endmacro %}

{% macro default__partition_window_config() %}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': 'fail',
        'pre_hook': "{{ delete_partition_window('event_date') }}",
    }) }}
{% endmacro %}

{% macro spark__partition_window_config() %}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'file_format': 'parquet',
        'partition_by': ['event_date'],
        'on_schema_change': 'fail',
        'pre_hook': "{{ delete_partition_window('event_date') }}",
    }) }}
{% endmacro %}


{% macro entity_dimension_config(entity) %}
    {#- Returns the config of the dimension of `entity` (`user` or `item`). -#}
    {{ return(adapter.dispatch('entity_dimension_config')(entity)) }}
{% endmacro %}

{% macro default__entity_dimension_config(entity) %}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'delete+insert',
        'unique_key': entity ~ '_id',
        'on_schema_change': 'fail',
        'pre_hook': "{{ delete_vanished_ids('" ~ entity ~ "') }}",
    }) }}
{% endmacro %}

{% macro spark__entity_dimension_config(entity) %}
    {{ return({'materialized': 'table', 'file_format': 'parquet'}) }}
{% endmacro %}
