"""The lake as a Dagster resource: a root URL and, for S3-compatible stores, an endpoint."""

from urllib.parse import quote

import dagster as dg

from reclake.lake import Lake


class LakeResource(dg.ConfigurableResource):
    """Where every file of the pipeline lives.

    Attributes:
        root: fsspec URL of the lake: a local folder (the default, under ``.reclake/``)
            or ``s3://bucket/prefix``. S3 credentials come from the usual AWS variables.
        s3_endpoint_url: endpoint of an S3-compatible server (MinIO, moto, R2); leave
            unset for AWS.
        reports_url: where ``monitoring.report_server`` serves this lake over HTTP
            (``make ui`` starts it); None: reports are linked by path only.
        evidently_ui_url: where ``monitoring.evidently_ui`` serves the lake's Evidently
            workspace (``make reports`` starts it); None: no link to its projects.
    """

    root: str
    s3_endpoint_url: str | None = None
    reports_url: str | None = None
    evidently_ui_url: str | None = None

    def get_lake(self) -> Lake:
        return Lake.open(self.root, self.s3_endpoint_url)

    def file_link(self, url: str) -> dg.MetadataValue:
        """Metadata naming a lake file or folder: a path on a local lake, else its URL."""
        return dg.MetadataValue.path(url) if self.get_lake().is_local else dg.MetadataValue.url(url)

    def report_links(self, name: str, url: str) -> dict[str, dg.MetadataValue]:
        """Metadata that locates the lake file ``url``: ``<name>_url``, the page one click
        away in the UI (the report server), and ``<name>_path``, where the file lives.

        Args:
            name: the metadata key's stem, e.g. ``report`` or ``training_curve``.
            url: a file (or folder) under the lake root, as ``Lake.url`` gives it.
        """
        root = self.get_lake().root.rstrip("/") + "/"
        if not url.startswith(root):
            raise ValueError(f"{url} is not under the lake root {root}")
        links = {f"{name}_path": self.file_link(url)}
        page = self.reports_page(url[len(root) :])
        if page is not None:
            links[f"{name}_url"] = page
        return links

    def reports_page(self, path: str) -> dg.MetadataValue | None:
        """The URL of the report server's ``path`` (a lake-relative path, or a route of
        ``monitoring.report_server`` such as ``data_docs/index.html``); None without a server."""
        if not self.reports_url:
            return None
        return dg.MetadataValue.url(f"{self.reports_url.rstrip('/')}/{quote(path, safe='/=')}")
