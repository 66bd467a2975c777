"""Ranking models of the zoo: single-task pCTR rankers and multi-task CTR/CVR models.

- ``base``: ``FeatureModel``, the Keras base class every ranker shares;
- ``layers``: the serialisable Keras layers they are made of;
- ``rankers``: FM, DeepFM, DCN-v2 (stacked / parallel), hashed logistic regression, biased MF;
- ``multitask``: ESMM and MMoE (``pctr``, ``pcvr``, ``pctcvr``).
"""
