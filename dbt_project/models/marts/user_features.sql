-- Serving features per user as of the end of the newest loaded day: impressions, clicks
-- and smoothed CTR over the `lookback_days` days ending with that day. Users without
-- recent impressions keep a row with zero counts and the prior CTR, like a first-time
-- impression in training_examples.

with

recent_activity as (

    {{ recent_activity('user_id') }}

),

users as (

    select
        user_id,
        user_segment

    from {{ ref('dim_users') }}

)

select
    users.user_id,
    users.user_segment,
    cast(coalesce(recent_activity.impressions, 0) as bigint) as user_impressions_7d,
    cast(coalesce(recent_activity.clicks, 0) as bigint) as user_clicks_7d,
    {{ smoothed_ctr('coalesce(recent_activity.clicks, 0)', 'coalesce(recent_activity.impressions, 0)') }}
        as user_ctr_7d

from users
left join recent_activity
    on users.user_id = recent_activity.user_id
