"""Start a real ``bentoml serve`` of a model tag for a test, and always stop it."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import requests
import toy_examples
from conftest import PROJECT_ROOT, free_port

from serving.online_store import json_native

SPEC = toy_examples.SPEC  # the toy exports' spec (the synthetic source's)
NAMESPACE = SPEC.source
CONTEXT = {"device": "mobile", "slot_position": 2, "hour_of_day": 13, "day_of_week": 4}
HISTORY = ["i0001", "i0002", "i0003", "i0004", "i0005"]  # u0001's recent items in the tests' stores


def store_entities(users: pd.DataFrame, items: pd.DataFrame, history: dict[str, list[str]] | None = None) -> dict:
    """The online store's rows for the feature tables (as the ``online_features`` asset
    writes them), with ``history``: user id -> recent items."""

    def rows(table: pd.DataFrame, entity: str) -> dict:
        names = SPEC.lookup_features(entity)
        return {str(r[f"{entity}_id"]): {n: json_native(r[n]) for n in names} for r in table.to_dict("records")}

    entities = {"user": rows(users, "user"), "item": rows(items, "item")}
    for user_id, items_seen in (history or {}).items():
        entities["user"][user_id]["history"] = items_seen
    return entities


STARTUP_TIMEOUT_S = 180
# A test's server runs one worker unless the test is about concurrency: each worker
# imports TensorFlow and loads the model, seconds of a core the other test worker needs.
ONE_WORKER = {"RECLAKE_SERVE_WORKERS": "1"}


@contextmanager
def running_service(tag: str, bentoml_home: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Serve ``tag`` from the store at ``bentoml_home`` on a free loopback port.

    ``extra_env``: more ``RECLAKE_*`` serving settings (``serving.config.ServingConfig``).
    One worker (``ONE_WORKER``) unless ``extra_env`` asks for more.

    Yields:
        The base URL, once ``/readyz`` answers 200.
    """
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home),
        "RECLAKE_BENTO_MODEL_TAG": tag,
        "TF_USE_LEGACY_KERAS": "1",
        **ONE_WORKER,
        **(extra_env or {}),
    }
    argv = [str(Path(sys.executable).parent / "bentoml"), "serve", "serving.service:RecommenderService",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with running_server(argv, port, env, bentoml_home / f"serve-{port}.log") as base_url:
        yield base_url


@contextmanager
def running_server(argv: list[str], port: int, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Start ``argv`` (a server listening on ``port``) with its output in ``log_path``.

    Yields:
        The base URL, once ``/readyz`` answers 200; the process group is stopped after.
    """
    log = log_path.open("w")
    process = subprocess.Popen(
        argv, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {process.returncode}; see {log.name}")
            try:
                if requests.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # still starting
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {STARTUP_TIMEOUT_S} s; see {log.name}")
            time.sleep(1)
        yield base_url
    finally:
        stop_process_group(process, signal.SIGTERM, timeout=30)
        log.close()


def stop_process_group(process: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send ``sig`` to the process group ``process`` leads; SIGKILL it after ``timeout`` s."""
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


TOY_RANKER = {"type": "dcn_v2", "model": {"embedding_dim": 4, "deep_units": [16]},
              "training": {"batch_size": 256, "epochs": 1, "early_stopping_patience": None}}  # fmt: skip


TOY_METADATA = {
    "trained_on": ["2024-01-01", "2024-01-02"],
    "evaluated_on": "2024-01-03",
    "metrics": {"auc": 0.71, "logloss": 0.33},
}


def export_toy_recommender(path: Path, model_version: str, popular: int = 20):
    """Train a small DCN ranker and two-tower retrieval on ``toy_examples`` and export them
    to ``path`` (one epoch each: a real, if weak, model).

    Returns:
        (examples, user_features, item_features) the model was trained and exported with.
    """
    from models.export.savedmodel import export_recommender
    from models.retrieval.popularity import popular_items
    from models.retrieval.two_tower import RetrievalConfig
    from models.training.registry import train_model
    from models.training.two_tower import train_retrieval

    examples = toy_examples.make_training_examples(n_users=40, n_items=30, n_rows=3000)
    users, items = toy_examples.feature_tables(examples)
    ranking = train_model(TOY_RANKER, examples, feature_spec=toy_examples.SPEC).model
    retrieval = train_retrieval(examples, toy_examples.SPEC, RetrievalConfig(batch_size=128, epochs=1)).model
    metadata = {**TOY_METADATA, "model_version": model_version}
    export_recommender(
        ranking, users, items, metadata, path, retrieval_model=retrieval, popular_items=popular_items(examples, popular)
    )
    return examples, users, items
