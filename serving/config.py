"""The serving tier's settings, read once from the environment of ``bentoml serve``.

``bentoml serve`` builds the service class at import, in every process it starts, so its
settings come from environment variables (``make serve`` and the tests set them). Each
variable, its default and its meaning is listed once, in ``ServingConfig``'s fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

ENV_PREFIX = "RECLAKE_"


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ServingConfig:
    """Serving settings; each field ``name`` is read from ``RECLAKE_<NAME>``.

    Attributes:
        bento_model_tag: the model version served at start (``name:version``, never latest).
        pinned_tag_file: a file holding the tag to serve; when it changes the running
            service loads that version beside the old one, warms it up and swaps it in
            (hot swap). Empty: the first tag is served until restart.
        swap_poll_s: how often the pinned tag file is read.
        online_store_url: URL of the online feature store (``redis://host:port/db``, or a
            SQLite file path for the embedded store). Empty: the features frozen in the
            SavedModel at export are used.
        prediction_log_root: lake root (local folder or ``s3://``) that prediction logs are
            written under (``landing/prediction_logs/<source>/dt=<day>/``). Empty: no logs.
        s3_endpoint_url: S3 endpoint for an ``s3://`` prediction log root.
        serve_workers: worker processes (default: one per core).
        serve_threads: request threads per worker; TensorFlow releases the GIL while a
            graph runs, so a few threads keep a core busy.
        tf_threads: TensorFlow intra-op threads per worker (default: cores / workers).
        max_in_flight: requests a worker takes at once (running + waiting); more wait at
            most ``queue_timeout_ms`` for a slot, then get a 503 with Retry-After.
        queue_timeout_ms: how long a request may wait for a slot.
        max_body_bytes: largest request body; larger gets a 413.
        request_timeout_s: BentoML's per-request timeout.
        campaigns: the campaigns file ``/bid`` bids for (``serving.bidding.load_campaigns``);
            empty: ``/bid`` answers 404 for every campaign.
        experiment: an A/B experiment (``serving.experiments.load_experiment``: a YAML/JSON
            file or inline JSON); empty: every request is answered by the pinned model.
    """

    bento_model_tag: str = ""
    pinned_tag_file: str = ""
    swap_poll_s: float = 2.0
    online_store_url: str = ""
    prediction_log_root: str = ""
    s3_endpoint_url: str = ""
    serve_workers: int = 0
    serve_threads: int = 4
    tf_threads: int = 0
    max_in_flight: int = 8
    queue_timeout_ms: float = 20.0
    max_body_bytes: int = 1_000_000
    request_timeout_s: float = 10.0
    campaigns: str = ""
    experiment: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingConfig:
        """The settings from ``environ`` (default ``os.environ``); unset or empty: the default.

        Raises:
            ValueError: naming the variable whose value has the wrong type.
        """
        environ = os.environ if environ is None else environ
        values = {}
        for item in fields(cls):
            name = ENV_PREFIX + item.name.upper()
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            kind = type(item.default)
            try:
                values[item.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: expected {kind.__name__}") from None
        return cls(**values)

    @property
    def workers(self) -> int:
        return self.serve_workers or _cores()

    @property
    def tensorflow_threads(self) -> int:
        return self.tf_threads or max(1, _cores() // self.workers)


def serving_environment(
    bentoml_home: str | os.PathLike[str],
    tag: str,
    *,
    pinned_tag_file: str | os.PathLike[str] | None = None,
    online_store_url: str | None = None,
    prediction_log_root: str | None = None,
    s3_endpoint_url: str | None = None,
    workers: int | None = None,
    campaigns: str | os.PathLike[str] | None = None,
    experiment: str | None = None,
) -> dict[str, str]:
    """The environment ``bentoml serve serving.service:RecommenderService`` needs to serve
    ``tag`` from the store of ``bentoml_home`` with these settings (None: left unset)."""
    env = {"BENTOML_HOME": os.path.abspath(os.fspath(bentoml_home)), "TF_USE_LEGACY_KERAS": "1"}
    settings = {
        "bento_model_tag": tag,
        "pinned_tag_file": os.path.abspath(os.fspath(pinned_tag_file)) if pinned_tag_file else None,
        "online_store_url": online_store_url,
        "prediction_log_root": prediction_log_root,
        "s3_endpoint_url": s3_endpoint_url,
        "serve_workers": workers,
        "campaigns": os.path.abspath(os.fspath(campaigns)) if campaigns else None,
        "experiment": experiment,
    }
    env.update({ENV_PREFIX + name.upper(): str(value) for name, value in settings.items() if value})
    return env
