{% test point_in_time_aggregates(model, entity=none) %}
{#- Fails on every row whose aggregates of the spec (of `entity` only, if given) are
    inconsistent: positives below 0 or above events, a rate outside [0, 1], a shorter
    window counting more events or positives than a longer one, or a null anywhere.
    Passes trivially when the source has no ids for the entity (no such columns). -#}
{%- set spec = feature_spec() -%}
{%- set entities = [entity] if entity else spec['entities'] -%}
{%- set checks = [] -%}
{%- for name in entities if name in spec['entities'] -%}
    {%- for days in spec['windows_days'] -%}
        {%- set events = name ~ '_events_' ~ days ~ 'd' -%}
        {%- set positives = name ~ '_positives_' ~ days ~ 'd' -%}
        {%- set rate = name ~ '_positive_rate_' ~ days ~ 'd' -%}
        {%- do checks.append(positives ~ ' >= 0 and ' ~ positives ~ ' <= ' ~ events) -%}
        {%- do checks.append(rate ~ ' >= 0 and ' ~ rate ~ ' <= 1') -%}
        {%- if not loop.first -%}
            {%- set shorter = loop.previtem ~ 'd' -%}
            {%- do checks.append(name ~ '_events_' ~ shorter ~ ' <= ' ~ events) -%}
            {%- do checks.append(name ~ '_positives_' ~ shorter ~ ' <= ' ~ positives) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endfor -%}
select *
from {{ model }}
where {% if checks %}not coalesce({{ checks | join(' and ') }}, false){% else %}1 = 0{% endif %}
{% endtest %}
