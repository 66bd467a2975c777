-- One row per bronze impression inside the partition window, typed per the data contract,
-- plus the time parts the features use. The `dt` filter runs on the hive path, so only the
-- window's day folders are read; marts that need history before the window read it from
-- fct_impressions, which holds every loaded day.

with

source as (

    select * from {{ source('bronze', 'events') }}
    where {{ partition_window_filter('dt', compare_as='string') }}

),

renamed as (

    select
        cast(event_id as string) as event_id,
        cast(event_ts as timestamp) as event_ts,
        cast(user_id as string) as user_id,
        cast(item_id as string) as item_id,
        cast(user_segment as string) as user_segment,
        cast(device as string) as device,
        cast(slot_position as bigint) as slot_position,
        cast(category as string) as category,
        cast(price as double) as price,
        cast(bid_price as double) as bid_price,
        cast(market_price as double) as market_price,
        cast(clicked as bigint) as clicked,
        cast(converted as bigint) as converted,
        cast(dt as date) as event_date

    from source

),

with_time_parts as (

    select
        renamed.*,
        {{ epoch_seconds('renamed.event_ts') }} as event_epoch,
        cast(extract(hour from renamed.event_ts) as int) as hour_of_day,
        {{ day_of_week_monday_zero('renamed.event_ts') }} as day_of_week

    from renamed

)

select * from with_time_parts
