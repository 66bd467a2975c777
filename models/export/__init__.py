"""Export and load: SavedModels with serving signatures, ONNX rankers, zoo retrievers.

- ``savedmodel``: the served recommender (ranker + retrieval + popularity fallback);
- ``onnx``: single-task rankers as ONNX;
- ``retrievers``: a zoo retriever as a SavedModel with a ``retrieve`` signature.
"""
