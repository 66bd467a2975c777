"""Reclake core: settings and the lake's storage layout, shared by every stage.

Plain Python with no Dagster imports, so libraries, benchmarks and tests can use it.
"""
