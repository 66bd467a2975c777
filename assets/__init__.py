"""Dagster assets: thin wrappers that call the plain libraries and report metadata.

Groups follow the pipeline's stages: ``landing``, ``bronze``, ``features``,
``models``, ``serving``, ``monitoring``.
"""
