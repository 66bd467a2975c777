"""Jobs, selected by asset group so that they read like the architecture."""

import dagster as dg

from assets.partitions import daily_partitions

# Everything, generator included: what `make run` materializes for the synthetic days.
main_job = dg.define_asset_job(
    name="reclake_main_job",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Synthetic logs -> bronze -> dbt features -> models -> BentoML -> drift report.",
)

# From bronze on: what a newly landed day (shipped by any source) needs.
ingest_to_serve_job = dg.define_asset_job(
    name="ingest_to_serve_job",
    selection=dg.AssetSelection.assets("raw_events").downstream(),
    partitions_def=daily_partitions,
    description="A landed day -> bronze -> features -> retrained, served model -> drift report.",
)
