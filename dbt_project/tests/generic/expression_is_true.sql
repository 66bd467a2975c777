{% test expression_is_true(model, expression) %}
{#- Fails on every row of `model` for which the SQL boolean `expression` is not true. -#}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
