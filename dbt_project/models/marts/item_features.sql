-- Serving features per item as of the end of the newest loaded day: impressions, clicks
-- and smoothed CTR over the `lookback_days` days ending with that day. Items without
-- recent impressions keep a row with zero counts and the prior CTR, like a first-time
-- impression in training_examples.

{%- set lookback_days = validated_lookback_days() %}

with

impressions as (

    select
        item_id,
        event_date,
        clicked

    from {{ ref('fct_impressions') }}

),

feature_day as (

    select max(event_date) as newest_day from impressions

),

recent_activity as (

    select
        impressions.item_id,
        count(*) as impressions,
        sum(impressions.clicked) as clicks

    from impressions
    cross join feature_day
    where impressions.event_date > {{ dbt.dateadd('day', -lookback_days, 'feature_day.newest_day') }}
    group by impressions.item_id

),

items as (

    select
        item_id,
        category,
        price

    from {{ ref('dim_items') }}

)

select
    items.item_id,
    items.category,
    items.price,
    cast(coalesce(recent_activity.impressions, 0) as bigint) as item_impressions_7d,
    cast(coalesce(recent_activity.clicks, 0) as bigint) as item_clicks_7d,
    {{ smoothed_ctr('coalesce(recent_activity.clicks, 0)', 'coalesce(recent_activity.impressions, 0)') }}
        as item_ctr_7d

from items
left join recent_activity
    on items.item_id = recent_activity.item_id
