-- Every loaded impression, one row per event_id. Each run writes the days of its partition
-- window: on an incremental run the pre-hook first deletes the window's rows, so re-running
-- a day replaces it (no duplicates, no rows left over from an earlier delivery), and
-- delete+insert on event_id keeps the key unique even across days.

{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ delete_partition_window('event_date') }}"
    )
}}

with

events as (

    select * from {{ ref('stg_bronze__events') }}
    {% if is_incremental() %}
    -- The batch is exactly the window the pre-hook emptied, whatever staging lets through.
    where {{ partition_window_filter('event_date') }}
    {% endif %}

)

select
    events.event_id,
    events.event_ts,
    events.user_id,
    events.item_id,
    events.user_segment,
    events.device,
    events.slot_position,
    events.category,
    events.price,
    events.bid_price,
    events.market_price,
    events.clicked,
    events.converted,
    events.event_date,
    events.event_epoch,
    events.hour_of_day,
    events.day_of_week

from events
