{% test user_history_fits_spec(model) %}
{#- Fails on every row whose `user_history` is null or longer than the var
    `history_length`. Passes trivially when the source lacks user or item ids (there is
    no `user_history`). -#}
{%- set spec = feature_spec() -%}
select *
from {{ model }}
{%- if spec['has_history'] %}
where user_history is null or {{ list_length('user_history') }} > {{ spec['history_length'] }}
{%- else %}
where 1 = 0
{%- endif %}
{% endtest %}
