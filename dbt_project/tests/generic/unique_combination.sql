{% test unique_combination(model, columns) %}
{#- Fails on every combination of `columns` that more than one row holds. -#}
select {{ columns | join(', ') }}, count(*) as rows_holding_it
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
