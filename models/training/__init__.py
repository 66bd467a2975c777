"""One training layer for the pipeline and the zoo: configs in, trained models and metrics out.

- ``config``: model configs (``models/configs/*.yaml``) parsed into a ``ModelSpec``;
- ``retriever_kinds``: the retriever types a config may name and their settings;
- ``registry``: ``build_model`` / ``train_model`` / ``evaluate_model`` for rankers;
- ``retrievers``: ``train_retriever`` for the zoo's retrievers;
- ``two_tower``: the pipeline's two-tower retrieval trained on ``training_examples``;
- ``distribution``: the ``tf.distribute`` strategy and precision; ``curves``: training curves.
"""
