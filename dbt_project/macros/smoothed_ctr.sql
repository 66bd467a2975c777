{% macro smoothed_ctr(clicks, impressions) %}
    {#- Returns the SQL expression of the smoothed click-through rate
        `(clicks + ctr_prior * ctr_prior_weight) / (impressions + ctr_prior_weight)`,
        a double in [0, 1] that equals `ctr_prior` when there are no impressions.
        The only place the CTR formula lives. -#}
    {%- set prior = var('ctr_prior') -%}
    {%- set weight = var('ctr_prior_weight') -%}
    {%- if prior is not number or prior < 0 or prior > 1 -%}
        {{ exceptions.raise_compiler_error("var 'ctr_prior' must be a number in [0, 1], got '" ~ prior ~ "'") }}
    {%- endif -%}
    {%- if weight is not number or weight <= 0 -%}
        {{ exceptions.raise_compiler_error("var 'ctr_prior_weight' must be a number > 0, got '" ~ weight ~ "'") }}
    {%- endif -%}
    (cast({{ clicks }} as double) + cast({{ prior }} as double) * {{ weight }})
        / (cast({{ impressions }} as double) + {{ weight }})
{%- endmacro %}
