-- One row per item seen in fct_impressions: the latest category and price, first/last
-- impression and lifetime outcome counts.

with

impressions as (

    select
        event_id,
        event_ts,
        item_id,
        category,
        price,
        clicked,
        converted

    from {{ ref('fct_impressions') }}

),

latest_attributes as (

    select
        item_id,
        category,
        price,
        row_number() over (
            partition by item_id
            order by event_ts desc, event_id desc
        ) as recency_rank

    from impressions

),

activity as (

    select
        item_id,
        min(event_ts) as first_seen_at,
        max(event_ts) as last_seen_at,
        count(*) as impressions,
        sum(clicked) as clicks,
        sum(converted) as conversions

    from impressions
    group by item_id

)

select
    activity.item_id,
    latest_attributes.category,
    latest_attributes.price,
    activity.first_seen_at,
    activity.last_seen_at,
    cast(activity.impressions as bigint) as impressions,
    cast(activity.clicks as bigint) as clicks,
    cast(activity.conversions as bigint) as conversions

from activity
inner join latest_attributes
    on activity.item_id = latest_attributes.item_id
    and latest_attributes.recency_rank = 1
