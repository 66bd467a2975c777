-- Serving features per item as of the end of the newest loaded day: impressions, clicks
-- and smoothed CTR over the `lookback_days` days ending with that day. Items without
-- recent impressions keep a row with zero counts and the prior CTR, like a first-time
-- impression in training_examples.

with

recent_activity as (

    {{ recent_activity('item_id') }}

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
