{#-
  Lists (arrays) of strings, whose functions are spelled differently in every engine:
  DuckDB `list(... order by ...)` / `len`, Spark `collect_list` / `size`.
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


{% macro default__ordered_string_list(value, order_by) -%}
    {{ unsupported_list_functions() }}
{%- endmacro %}

{% macro default__empty_string_list() -%}
    {{ unsupported_list_functions() }}
{%- endmacro %}

{% macro default__list_length(list) -%}
    {{ unsupported_list_functions() }}
{%- endmacro %}

{% macro unsupported_list_functions() -%}
    {{ exceptions.raise_compiler_error(
        "the list functions of adapter '" ~ adapter.type() ~ "' are not implemented: add "
        ~ adapter.type() ~ "__ordered_string_list, __empty_string_list and __list_length to macros/lists.sql") }}
{%- endmacro %}
