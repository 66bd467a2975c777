-- One row per impression of the partition window with point-in-time features: the user's
-- and the item's impressions, clicks and smoothed CTR over the `lookback_days` before the
-- impression. The frames end one microsecond before the impression, so neither its own
-- label nor any event at the same timestamp or later is counted. History comes from
-- fct_impressions, read from `lookback_days` before the window start; only the window's
-- rows are written (an incremental run first deletes them, see the pre-hook).

{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ delete_partition_window('event_date') }}"
    )
}}

{%- set lookback_days = validated_lookback_days() -%}
{%- set lookback_microseconds = lookback_days * 86400 * 1000000 %}

with

impressions_with_history as (

    select
        event_id,
        event_date,
        event_ts,
        user_id,
        item_id,
        user_segment,
        device,
        slot_position,
        category,
        price,
        hour_of_day,
        day_of_week,
        clicked,
        converted,
        {{ epoch_microseconds('event_ts') }} as event_epoch_us

    from {{ ref('fct_impressions') }}
    where {{ partition_window_filter('event_date', lookback_days=lookback_days) }}

),

trailing_counts as (

    select
        impressions_with_history.*,
        count(*) over user_history as user_impressions_7d,
        coalesce(sum(clicked) over user_history, 0) as user_clicks_7d,
        count(*) over item_history as item_impressions_7d,
        coalesce(sum(clicked) over item_history, 0) as item_clicks_7d

    from impressions_with_history
    window
        user_history as (
            partition by user_id
            order by event_epoch_us
            range between {{ lookback_microseconds }} preceding and 1 preceding
        ),
        item_history as (
            partition by item_id
            order by event_epoch_us
            range between {{ lookback_microseconds }} preceding and 1 preceding
        )

),

window_rows as (

    select * from trailing_counts
    where {{ partition_window_filter('event_date') }}

)

select
    event_id,
    event_date,
    event_ts,
    user_id,
    item_id,
    user_segment,
    device,
    slot_position,
    category,
    price,
    hour_of_day,
    day_of_week,
    cast(user_impressions_7d as bigint) as user_impressions_7d,
    cast(user_clicks_7d as bigint) as user_clicks_7d,
    {{ smoothed_ctr('user_clicks_7d', 'user_impressions_7d') }} as user_ctr_7d,
    cast(item_impressions_7d as bigint) as item_impressions_7d,
    cast(item_clicks_7d as bigint) as item_clicks_7d,
    {{ smoothed_ctr('item_clicks_7d', 'item_impressions_7d') }} as item_ctr_7d,
    clicked,
    converted

from window_rows
