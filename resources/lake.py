"""The lake as a Dagster resource: a root URL and, for S3-compatible stores, an endpoint."""

import dagster as dg

from reclake.lake import Lake


class LakeResource(dg.ConfigurableResource):
    """Where every file of the pipeline lives.

    Attributes:
        root: fsspec URL of the lake: a local folder (the default, under ``.reclake/``)
            or ``s3://bucket/prefix``. S3 credentials come from the usual AWS variables.
        s3_endpoint_url: endpoint of an S3-compatible server (MinIO, moto, R2); leave
            unset for AWS.
    """

    root: str
    s3_endpoint_url: str | None = None

    def get_lake(self) -> Lake:
        return Lake.open(self.root, self.s3_endpoint_url)
