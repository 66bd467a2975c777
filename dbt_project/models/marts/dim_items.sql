-- One row per item ever seen: the item columns of the spec as of its latest event,
-- first and last event, lifetime events and positives (zero rows when the source has no
-- item ids). Incremental: a run recomputes only the items its window touches.

{{ config(**entity_dimension_config('item')) }}

{{ entity_dimension('item') }}
