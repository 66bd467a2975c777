"""Serving: the BentoML recommender service, its HTTP schemas and the model-store helper."""
