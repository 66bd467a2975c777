{% macro recent_activity(id_column) %}
    {#- Returns a select of `id_column, impressions, clicks` over the `lookback_days` days
        ending with the newest day in fct_impressions: the serving-time counterpart of the
        point-in-time aggregates of training_examples. -#}
    {%- set lookback_days = validated_lookback_days() -%}
    select
        impressions.{{ id_column }},
        count(*) as impressions,
        sum(impressions.clicked) as clicks

    from {{ ref('fct_impressions') }} as impressions
    cross join (select max(event_date) as newest_day from {{ ref('fct_impressions') }}) as feature_day
    where impressions.event_date > {{ dbt.dateadd('day', -lookback_days, 'feature_day.newest_day') }}
    group by impressions.{{ id_column }}
{% endmacro %}
