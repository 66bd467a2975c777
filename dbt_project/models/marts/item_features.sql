-- Serving lookups by item_id as of the newest loaded day: the item columns of the spec and
-- the aggregates training_examples computes, over the windows ending with that day.

{{ entity_serving_features('item') }}
