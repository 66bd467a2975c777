"""Model inputs: the feature spec turned into arrays and encoders, and reproducible splits.

- ``features``: feature arrays, vocabularies and fitted preprocessing from a feature spec;
- ``encoder``: the Keras layer that encodes raw feature columns in the graph;
- ``splits``: the training window split by day (train / validation / held-out test);
- ``protocols``: published split protocols (TFRS 80/20, RecBole 8:1:1, leave-one-out, temporal).
"""
