"""Jobs, schedules and sensors: how new data becomes a new model without hand work."""
