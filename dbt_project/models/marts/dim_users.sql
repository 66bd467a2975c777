-- One row per user seen in fct_impressions: the latest segment, the device used most
-- (ties go to the most recently used), first/last sighting and lifetime outcome counts.

with

impressions as (

    select
        event_id,
        event_ts,
        user_id,
        user_segment,
        device,
        clicked,
        converted

    from {{ ref('fct_impressions') }}

),

latest_segment as (

    select
        user_id,
        user_segment,
        row_number() over (
            partition by user_id
            order by event_ts desc, event_id desc
        ) as recency_rank

    from impressions

),

device_usage as (

    select
        user_id,
        device,
        count(*) as impressions,
        max(event_ts) as last_used_at

    from impressions
    group by user_id, device

),

ranked_devices as (

    select
        user_id,
        device,
        row_number() over (
            partition by user_id
            order by impressions desc, last_used_at desc, device
        ) as usage_rank

    from device_usage

),

activity as (

    select
        user_id,
        min(event_ts) as first_seen_at,
        max(event_ts) as last_seen_at,
        count(*) as impressions,
        sum(clicked) as clicks,
        sum(converted) as conversions

    from impressions
    group by user_id

)

select
    activity.user_id,
    latest_segment.user_segment,
    ranked_devices.device as primary_device,
    activity.first_seen_at,
    activity.last_seen_at,
    cast(activity.impressions as bigint) as impressions,
    cast(activity.clicks as bigint) as clicks,
    cast(activity.conversions as bigint) as conversions

from activity
inner join latest_segment
    on activity.user_id = latest_segment.user_id
    and latest_segment.recency_rank = 1
inner join ranked_devices
    on activity.user_id = ranked_devices.user_id
    and ranked_devices.usage_rank = 1
