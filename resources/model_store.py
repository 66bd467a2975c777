"""The BentoML model store as a Dagster resource: where served models are registered."""

import shlex
import sys
import tempfile
from pathlib import Path

import dagster as dg

from reclake.lake import Lake

# `make serve`'s default port: the Dagster UI has 3000, the Evidently UI may have 8000.
SERVE_PORT = 3001


class ModelStoreResource(dg.ConfigurableResource):
    """Registers exported SavedModels in a BentoML model store and pins the served tag.

    Attributes:
        bentoml_home: the BentoML home whose ``models/`` folder is the store
            (``.reclake/bentoml`` by default; ``bentoml serve`` must use the same).
        pinned_tag_file: file holding the tag ``make serve`` serves.
        model_name: the bento model name the source's versions are registered under.
    """

    bentoml_home: str
    pinned_tag_file: str
    model_name: str

    def register(self, lake: Lake, savedmodel_url: str, metadata: dict, labels: dict[str, str]) -> str:
        """Copy a SavedModel from the lake into the store; returns its ``name:version`` tag."""
        from serving.bento_store import save_to_bento_store

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "savedmodel"
            if lake.is_local:
                local = Path(savedmodel_url)
            else:
                lake.fs.get(savedmodel_url.rstrip("/") + "/", str(local) + "/", recursive=True)
            return save_to_bento_store(self.bentoml_home, str(local), name=self.model_name, metadata=metadata, labels=labels)

    def savedmodel_dir(self, tag: str) -> str:
        """Local path of the SavedModel stored under ``tag``."""
        from serving.bento_store import savedmodel_path

        return savedmodel_path(self.bentoml_home, tag)

    def versions(self) -> list[dict]:
        """Every registered version, newest first, with its labels and metrics."""
        from serving.bento_store import list_versions

        return list_versions(self.bentoml_home, self.model_name)

    def pin(self, tag: str) -> None:
        """Make ``tag`` the model that ``make serve`` serves."""
        path = Path(self.pinned_tag_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tag + "\n")

    def pinned(self) -> str | None:
        path = Path(self.pinned_tag_file)
        return path.read_text().strip() if path.exists() else None

    def serve_command(
        self,
        tag: str,
        online_store_url: str | None = None,
        prediction_log_root: str | None = None,
        s3_endpoint_url: str | None = None,
        campaigns: str | None = None,
        port: int = SERVE_PORT,
    ) -> str:
        """A shell command that serves ``tag`` from this store when pasted in the project
        root: the store, the pinned tag file (hot swap), the online feature store, the
        prediction log root and the campaigns file (``/bid``), on a port other than the Dagster UI's 3000. ``make serve``
        runs the same (``automation.serve``)."""
        from serving.config import serving_environment

        env = serving_environment(
            self.bentoml_home,
            tag,
            pinned_tag_file=self.pinned_tag_file,
            online_store_url=online_store_url,
            prediction_log_root=prediction_log_root,
            s3_endpoint_url=s3_endpoint_url,
            campaigns=campaigns,
        )
        bentoml = Path(sys.executable).parent / "bentoml"
        assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
        return (
            f"{assignments} {shlex.quote(str(bentoml))} serve serving.service:RecommenderService "
            f"--host 127.0.0.1 --port {port}"
        )
