-- One row per item and day of the partition window: the day's events and positives, first
-- and last event, and the item columns of the spec as of the day's last event. The compact
-- history dim_items is recomputed from; built by window, from the staged events of the window.

{{ config(**partition_window_config()) }}

{{ entity_daily_activity('item') }}
