"""The BentoML service over real HTTP: a trained model in a temporary model store,
served by a real ``bentoml serve`` process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import requests
from conftest import free_port
from serving_support import ONE_WORKER, TOY_METADATA, export_toy_recommender, running_server, running_service

from models.export.savedmodel import load_recommender

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
METADATA = {**TOY_METADATA, "model_version": "svc-v1"}
PREDICT_ROW = {
    "user_id": "u0001", "item_id": "i0002", "device": "mobile", "slot_position": 2, "hour_of_day": 13, "day_of_week": 4,
}  # fmt: skip
CONTEXT = {"device": "mobile", "slot_position": 1}


def _base_env(bento_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENTOML_")}
    env.update(
        BENTOML_HOME=str(bento_home),
        BENTOML_DO_NOT_TRACK="True",
        TF_USE_LEGACY_KERAS="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("service") / "savedmodel"
    export_toy_recommender(path, METADATA["model_version"])
    return path


@pytest.fixture(scope="module")
def bento_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bentoml_home")


@pytest.fixture(scope="module")
def model_tag(savedmodel, bento_home) -> str:
    # In this process, whose BENTOML_HOME names another store: the store is passed explicitly.
    from serving.bento_store import save_to_bento_store

    tag = save_to_bento_store(
        bento_home, savedmodel, name="reclake_synthetic", metadata={"model_version": "svc-v1"}, labels={"stage": "test"}
    )
    stored = bento_home / "models" / tag.replace(":", "/") / "savedmodel" / "saved_model.pb"
    assert stored.is_file()
    return tag


@pytest.fixture(scope="module")
def server(model_tag, bento_home):
    """Base URL of a real ``bentoml serve`` of ``model_tag``, stopped after the module."""
    with running_service(model_tag, bento_home) as url:
        yield url


def _post(server: str, route: str, body) -> requests.Response:
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(f"{server}{route}", data=data, headers={"Content-Type": "application/json"}, timeout=30)


def test_recommend_known_user(server):
    body = {"user_id": "u0001", "k": 7, "context": {"device": "desktop", "slot_position": 1, "hour_of_day": 18}}
    response = _post(server, "/recommend", body)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == "u0001"
    assert body["fallback"] is None
    assert body["model_version"] == "svc-v1"
    assert [item["rank"] for item in body["items"]] == list(range(1, 8))
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < score < 1 for score in scores)


def test_recommend_defaults_to_ten_items_at_the_request_time(server):
    response = _post(server, "/recommend", {"user_id": "u0002", "context": {"device": "mobile", "slot_position": 1}})
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 10


def test_recommend_unknown_user_falls_back_to_popularity(server, savedmodel):
    context = {"device": "mobile", "slot_position": 1}
    response = _post(server, "/recommend", {"user_id": "someone_new", "k": 3, "context": context})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fallback"] == "popularity"
    expected = load_recommender(savedmodel).metadata["popular_items"][:3]
    assert [[item["item_id"], item["score"]] for item in body["items"]] == expected


def test_predict_serves_the_exported_model(server, savedmodel):
    rows = [PREDICT_ROW, {**PREDICT_ROW, "user_id": "someone_new", "slot_position": 9, "device": "tablet"}]
    response = _post(server, "/predict", {"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "svc-v1" and body["score_kind"] == "probability"
    assert body["scores"] == load_recommender(savedmodel).predict(pd.DataFrame(rows)).tolist()


def test_model_info(server, model_tag):
    response = _post(server, "/model_info", {})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bento_model_tag"] == model_tag
    assert body["model_version"] == "svc-v1" and body["source"] == "synthetic"
    assert body["metrics"] == METADATA["metrics"]
    assert body["trained_on"] == METADATA["trained_on"]
    assert body["item_count"] == 30
    assert body["inputs"]["predict"]["slot_position"] == "int"


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/recommend", {"k": 3, "context": CONTEXT}, "user_id"),
        ("/recommend", {"user_id": "u0001", "k": 0, "context": CONTEXT}, "k"),
        ("/recommend", {"user_id": "u0001", "k": 31, "context": CONTEXT}, "k"),  # the schema's limit: 30 indexed items
        ("/recommend", {"user_id": "u0001", "k": "5", "context": CONTEXT}, "k"),
        ("/recommend", {"user_id": 17, "context": CONTEXT}, "user_id"),
        ("/recommend", {"user_id": "u0001", "topk": 5, "context": CONTEXT}, "topk"),
        ("/recommend", {"user_id": "u0001"}, "context"),
        ("/predict", {"rows": []}, "rows"),
        ("/predict", {"rows": [PREDICT_ROW] * 1001}, "rows"),
    ],
)
def test_invalid_envelope_is_a_400_naming_the_field(server, route, body, field):
    response = _post(server, route, body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"error", "field", "status"} and error["status"] == 400, error
    assert error["field"] == field, error
    assert error["error"].startswith("invalid request: "), error


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/recommend", {"user_id": "u0001", "context": {"device": "phone", "slot_position": 1}}, "context.device"),
        ("/recommend", {"user_id": "u0001", "context": {"device": "mobile"}}, "context.slot_position"),
        ("/recommend", {"user_id": "u0001", "context": {**CONTEXT, "hour_of_day": 24}}, "context.hour_of_day"),
        ("/predict", {"rows": [PREDICT_ROW, {**PREDICT_ROW, "slot_position": 0}]}, "rows.1.slot_position"),
        ("/predict", {"rows": [{k: v for k, v in PREDICT_ROW.items() if k != "item_id"}]}, "rows.0.item_id"),
        ("/predict", {"rows": [{**PREDICT_ROW, "slot_position": "2"}]}, "rows.0.slot_position"),
    ],
)
def test_invalid_row_is_a_400_naming_the_row_and_field(server, route, body, field):
    response = _post(server, route, body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field, response.text
    assert f"{field}: " in response.json()["error"], response.text


def test_invalid_json_is_a_400(server):
    response = _post(server, "/recommend", "{not json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("the body is not valid JSON"), response.text


def test_service_refuses_an_unpinned_model_tag(bento_home, model_tag):
    code = textwrap.dedent(
        """
        import os
        from serving import service  # imports with the fixture's real tag
        for value in ["", "reclake_synthetic", "reclake_synthetic:latest", "Not A Tag!"]:
            os.environ["RECLAKE_BENTO_MODEL_TAG"] = value
            try:
                service.model_tag_from_env()
            except RuntimeError as error:
                print("refused:", error)
        os.environ["RECLAKE_BENTO_MODEL_TAG"] = "reclake_synthetic:abc123"
        print("accepted:", service.model_tag_from_env())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env={**_base_env(bento_home), "RECLAKE_BENTO_MODEL_TAG": model_tag},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("refused", "accepted"))]
    assert len(lines) == 5
    assert "is not set" in lines[0]
    assert "does not pin a model version" in lines[1] and "does not pin a model version" in lines[2]
    assert "is not a valid bento tag" in lines[3]
    assert lines[4] == "accepted: reclake_synthetic:abc123"


def test_a_built_bento_holds_every_project_module_the_service_imports(model_tag, bento_home):
    """``bentoml build`` of serving/bentofile.yaml packs the code and the packages the service needs."""
    env = {**_base_env(bento_home), "RECLAKE_BENTO_MODEL_TAG": model_tag, **ONE_WORKER}
    bentoml = Path(sys.executable).parent / "bentoml"
    built = subprocess.run(
        [str(bentoml), "build", "-f", "serving/bentofile.yaml", "--output", "tag", "."],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    bento_tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = bento_tag.split(":")
    bento = bento_home / "bentos" / name / version
    # Every module of this repository that importing the service loads, as a relative path.
    listed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(
            """
            import sys
            from pathlib import Path
            import serving.service
            root = Path.cwd().resolve()
            for module in list(sys.modules.values()):
                path = Path(getattr(module, "__file__", None) or "/").resolve()
                if path.is_relative_to(root) and ".venv" not in path.parts:
                    print(path.relative_to(root))
            """
        )],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-3000:]
    imported = sorted(set(listed.stdout.split()))
    assert "serving/service.py" in imported and any(path.startswith("reclake/") for path in imported)
    missing = [path for path in imported if not (bento / "src" / path).is_file()]
    assert not missing, f"the bento leaves out {missing}"
    assert (bento / "src" / "reclake" / "feature_specs" / "synthetic.yaml").is_file()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().lower()
    assert "pyyaml" in requirements and "tensorflow-recommenders" in requirements and "redis" in requirements

    # The built Bento (its own copy of the code and of the model), not the source tree, serves.
    port = free_port()
    argv = [str(bentoml), "serve", bento_tag, "--host", "127.0.0.1", "--port", str(port)]
    with running_server(argv, port, env, bento_home / "serve-built-bento.log") as url:
        response = _post(url, "/recommend", {"user_id": "u0001", "k": 3, "context": CONTEXT})
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == 3 and response.json()["model_version"] == "svc-v1"
