"""Monitoring libraries for Reclake: feature drift, calibration and data quality.

Plain Python with no Dagster imports; the Dagster assets call these functions.
Import the submodules directly (`monitoring.drift`, `monitoring.calibration`,
`monitoring.data_quality`): Evidently and Great Expectations are slow to import,
so this package does not pull them in eagerly.
"""
