"""Monitoring libraries for Reclake: feature drift, data quality and the report server
(calibration metrics are model evaluation: `models.calibration`).

Plain Python with no Dagster imports; the Dagster assets call these functions.
Import the submodules directly (`monitoring.drift`, `monitoring.report_server`,
`monitoring.data_quality`): Evidently and Great Expectations are slow to import,
so this package does not pull them in eagerly.
"""
