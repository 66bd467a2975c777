{% test id_present_per_spec(model, column_name) %}
{#- Fails on every row whose id column (`user_id` or `item_id`) is null although the
    source has such ids (var `has_<column_name>`), or set although it has none. -#}
{%- set present = var('has_' ~ column_name) -%}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is {{ 'null' if present else 'not null' }}
{% endtest %}
