{#-
  Lists (arrays), whose functions are spelled differently in every engine:
  DuckDB `list(... order by ...)` / `len` / `lambda p: ...`, Spark `collect_list` / `size` /
  `p -> ...`.
-#}

{% macro ordered_string_list(value, order_by) %}
    {#- Returns the aggregate expression collecting the string `value` of a group's rows
        into a list ordered by the ascending, distinct `order_by`. -#}
    {{ return(adapter.dispatch('ordered_string_list')(value, order_by)) }}
{% endmacro %}

{% macro duckdb__ordered_string_list(value, order_by) -%}
    list(cast({{ value }} as string) order by {{ order_by }})
{%- endmacro %}

{% macro spark__ordered_string_list(value, order_by) -%}
    {#- collect_list does not promise an order: sort (key, value) pairs, keep the values. -#}
    transform(
        sort_array(collect_list(struct({{ order_by }} as sort_key, cast({{ value }} as string) as value))),
        pair -> pair.value
    )
{%- endmacro %}


{% macro empty_string_list() %}
    {#- Returns the expression of an empty list of strings (the type of `ordered_string_list`). -#}
    {{ return(adapter.dispatch('empty_string_list')()) }}
{% endmacro %}

{% macro duckdb__empty_string_list() -%}
    cast([] as string[])
{%- endmacro %}

{% macro spark__empty_string_list() -%}
    cast(array() as array<string>)
{%- endmacro %}


{% macro list_length(list) %}
    {#- Returns the number of elements of the list expression `list`. -#}
    {{ return(adapter.dispatch('list_length')(list)) }}
{% endmacro %}

{% macro duckdb__list_length(list) -%}
    len({{ list }})
{%- endmacro %}

{% macro spark__list_length(list) -%}
    size({{ list }})
{%- endmacro %}


{% macro positives_up_to_row(partition_by, order_by, count) %}
    {#- Returns the window expression listing, for each positive row, it and the `count` - 1
        rows before it in the ascending, distinct `order_by` within `partition_by`, oldest
        first, as structs of `positive_number` (the `order_by` value), `event_epoch_us` and
        `item_id` (a string): what `history_items_since` reads. -#}
    {{ return(adapter.dispatch('positives_up_to_row')(partition_by, order_by, count)) }}
{% endmacro %}

{% macro duckdb__positives_up_to_row(partition_by, order_by, count) -%}
    list_sort(list(struct_pack(
        positive_number := {{ order_by }},
        event_epoch_us := event_epoch_us,
        item_id := cast(item_id as string)
    )) over (
        partition by {{ partition_by }}
        order by {{ order_by }}
        rows between {{ count - 1 }} preceding and current row
    ))
{%- endmacro %}

{% macro spark__positives_up_to_row(partition_by, order_by, count) -%}
    {#- collect_list does not promise an order: sort the structs (positive_number first). -#}
    sort_array(collect_list(named_struct(
        'positive_number', {{ order_by }},
        'event_epoch_us', event_epoch_us,
        'item_id', cast(item_id as string)
    )) over (
        partition by {{ partition_by }}
        order by {{ order_by }}
        rows between {{ count - 1 }} preceding and current row
    ))
{%- endmacro %}


{% macro history_items_since(positives, min_epoch_us) %}
    {#- Returns the `item_id`s of the list `positives` (from `positives_up_to_row`) whose
        `event_epoch_us` is at least `min_epoch_us`, newest first. -#}
    {{ return(adapter.dispatch('history_items_since')(positives, min_epoch_us)) }}
{% endmacro %}

{% macro duckdb__history_items_since(positives, min_epoch_us) -%}
    list_reverse(list_transform(
        list_filter({{ positives }}, lambda positive: positive.event_epoch_us >= {{ min_epoch_us }}),
        lambda positive: positive.item_id
    ))
{%- endmacro %}

{% macro spark__history_items_since(positives, min_epoch_us) -%}
    transform(
        reverse(filter({{ positives }}, positive -> positive.event_epoch_us >= {{ min_epoch_us }})),
        positive -> positive.item_id
    )
{%- endmacro %}


{% macro default__ordered_string_list(value, order_by) -%}
    {{ unsupported_list_functions() }}
{%- endmacro %}

{% macro default__empty_string_list() -%}
    {{ unsupported_list_functions() }}
{%- endmacro %}

{% macro default__list_length(list) -%}
    {{ unsupported_list_functions() }}
{%- endmacro %}

{% macro default__positives_up_to_row(partition_by, order_by, count) -%}
    {{ unsupported_list_functions() }}
{%- endmacro %}

{% macro default__history_items_since(positives, min_epoch_us) -%}
    {{ unsupported_list_functions() }}
{%- endmacro %}

{% macro unsupported_list_functions() -%}
    {{ exceptions.raise_compiler_error(
        "the list functions of adapter '" ~ adapter.type() ~ "' are not implemented: add "
        ~ adapter.type() ~ "__ordered_string_list, __empty_string_list, __list_length, __positives_up_to_row and "
        ~ "__history_items_since to macros/lists.sql") }}
{%- endmacro %}
