-- One row per user ever seen: the user columns of the spec as of its latest event,
-- first and last event, lifetime events and positives (zero rows when the source has no
-- user ids). Incremental: a run recomputes only the users its window touches.

{{ config(**entity_dimension_config('user')) }}

{{ entity_dimension('user') }}
