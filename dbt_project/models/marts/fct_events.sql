-- Every loaded event, one row per event_id, with every column of stg_bronze__events. A run
-- writes the days of its partition window: the pre-hook first deletes them (see
-- macros/materializations.sql), so re-running a day replaces it and a new day is appended.

{{ config(**partition_window_config()) }}

select * from {{ ref('stg_bronze__events') }}
where {{ partition_window_filter('event_date') }}
