"""Retrieval models: candidates for a user out of the whole catalogue.

- ``two_tower``: the two-tower model (log-Q correction, pooled history) and its index;
- ``index``: brute-force top-k over item embeddings;
- ``popularity``: the popularity ranking (fallback and baseline);
- ``baselines``: matrix models (popularity, random, EASE, BPR-MF, biased / Bayesian MF);
- ``recency``: EASE over a recency-weighted profile;
- ``sessions``: EASE mixed with a session co-occurrence matrix, both over request-time profiles;
- ``rating_blend``: a validation-fitted blend of rating predictors (baselines, kNN, MF);
- ``sequence``: SASRec; ``joint``: the joint retrieval + rating model.
"""
