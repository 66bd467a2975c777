"""BentoML service serving the exported recommender, with online features and hot swap.

Run: ``RECLAKE_BENTO_MODEL_TAG=reclake_synthetic:<version> bentoml serve
serving.service:RecommenderService`` (``make serve`` sets everything below). The tag must
name an exact version (the one training recorded); ``latest`` is refused so a deployment
never changes model silently. Settings are ``RECLAKE_*`` environment variables
(``serving.config.ServingConfig``): the online feature store, the pinned tag file watched
for hot swaps, the prediction log root, workers, threads and load shedding.

Endpoints (JSON, all ``POST``):

- ``/recommend`` ``{"user_id", "k"=10, "context": {<context columns>}}`` ->
  ``{"request_id", "user_id", "items": [{"item_id", "score", "rank"}], "fallback",
  "defaults_used", "model_version"}``; users unknown to the model get the popularity list
  with ``"fallback": "popularity"``. Only for sources with user and item ids;
  ``hour_of_day`` / ``day_of_week`` default to the request time (UTC).
- ``/predict`` ``{"rows": [{<ids and context columns>}]}`` -> ``{"request_id", "scores",
  "score_kind", "tasks", "defaults_used", "model_version"}``: pCTR for click sources
  (multi-task rankers add pctr, pcvr, pctcvr), the predicted rating for rating sources.
  A row may carry an ``event_id``: not scored, logged with the row's features, so the
  served model's calibration can join the scores served to the events' labels.
- ``/model_info`` -> tag, version, source, inputs, training window, offline metrics, and
  the online store, feature version, swaps and prediction-log counters of this worker.

``GET /readyz`` answers 503 while the online store is unreachable; ``GET /livez`` stays
200. Every 4xx and 503 has the error envelope of ``serving.http_guard``; the OpenAPI
schema (``/docs.json``) lists the served model's real inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reclake.runtime import configure_process

configure_process()  # before anything imports tensorflow

import bentoml  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from starlette.responses import Response  # noqa: E402

from reclake.feature_spec import feature_spec_from_dict  # noqa: E402
from serving.bento_store import SAVEDMODEL_SUBDIR  # noqa: E402
from serving.bidding import IMPRESSIONS_PER_PRICE, Campaign, decide_bid, load_campaigns  # noqa: E402
from serving.config import ServingConfig  # noqa: E402
from serving.experiments import Experiment, load_experiment  # noqa: E402
from serving.heap import settle_heap  # noqa: E402
from serving.hot_swap import ModelSwapper, read_pinned_tag  # noqa: E402
from serving.http_guard import RequestGuard, error_response, validation_error  # noqa: E402
from serving.openapi import complete_openapi  # noqa: E402
from serving.openrtb import Bid, BidExt, BidRequest, BidResponse, bid_response, imp_features  # noqa: E402
from serving.schemas import (  # noqa: E402
    ModelInfoResponse,
    PredictResponse,
    RecommendedItem,
    RecommendResponse,
    fill_derived_context,
    request_models,
)

if TYPE_CHECKING:
    from serving.scoring import ServedModel

logger = logging.getLogger("reclake.serving")
MODEL_TAG_ENV = "RECLAKE_BENTO_MODEL_TAG"
METADATA_FILE = os.path.join("assets", "reclake_model.json")  # models.export.savedmodel.METADATA_FILE, read without TF


def model_tag_from_env(config: ServingConfig | None = None) -> str:
    """The bento model tag to serve, from ``RECLAKE_BENTO_MODEL_TAG``.

    Raises:
        RuntimeError: if the variable is unset, malformed, or does not pin a version
            (no ``:<version>`` or ``:latest``).
    """
    value = (config or ServingConfig.from_env()).bento_model_tag.strip()
    if not value:
        raise RuntimeError(
            f"{MODEL_TAG_ENV} is not set: set it to the bento model tag that training recorded, "
            "e.g. reclake_synthetic:<version>"
        )
    try:
        tag = bentoml.Tag.from_str(value)
    except ValueError as error:
        raise RuntimeError(f"{MODEL_TAG_ENV}={value!r} is not a valid bento tag: {error}") from error
    if tag.version in (None, "latest"):
        raise RuntimeError(
            f"{MODEL_TAG_ENV}={value!r} does not pin a model version; use the exact tag training "
            "recorded (name:version), never latest"
        )
    return str(tag)


CONFIG = ServingConfig.from_env()
INITIAL_MODEL = bentoml.models.BentoModel(model_tag_from_env(CONFIG))
# The request models come from the model served at start (its metadata only: the service
# process that imports this module to route requests never loads TensorFlow).
with open(INITIAL_MODEL.resolve().path_of(os.path.join(SAVEDMODEL_SUBDIR, METADATA_FILE)), encoding="utf-8") as _handle:
    INITIAL_METADATA: dict[str, Any] = json.load(_handle)
REQUESTS = request_models(
    feature_spec_from_dict(INITIAL_METADATA["feature_spec"], where=f"{INITIAL_MODEL.tag} feature_spec"),
    INITIAL_METADATA["inputs"],
    int(INITIAL_METADATA["item_count"]),
)
RecommendRequest = REQUESTS.recommend
PredictRequest = REQUESTS.predict
CAMPAIGNS: dict[str, Campaign] = load_campaigns(CONFIG.campaigns) if CONFIG.campaigns else {}
EXPERIMENT: Experiment | None = load_experiment(CONFIG.experiment)
SHADOW_QUEUE = 256  # shadow scorings waiting at most; more are dropped (counted), never block a request


def _with_event_ids(scored, event_ids: list[str | None]):
    """``scored`` (a ``serving.scoring.Scored`` of /predict rows) with each row's
    ``event_id`` added to its logged features (``{"rows": [...]}`` for several rows); the
    same ``scored`` when no row has one."""
    if all(event_id is None for event_id in event_ids):
        return scored
    rows = scored.features["rows"] if len(event_ids) > 1 else [scored.features]
    logged = [{**row, "event_id": event_id} for row, event_id in zip(rows, event_ids, strict=True)]
    return dataclasses.replace(scored, features={"rows": logged} if len(logged) > 1 else logged[0])


@bentoml.service(
    name="reclake_recommender",
    workers=CONFIG.workers,
    threads=CONFIG.serve_threads,
    traffic={"timeout": CONFIG.request_timeout_s},
)
class RecommenderService:
    """Recommendations and scores from the pinned model; features from the online store."""

    bento_model = INITIAL_MODEL

    def __init__(self) -> None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(CONFIG.tensorflow_threads)
        tf.config.threading.set_inter_op_parallelism_threads(CONFIG.tensorflow_threads)
        self.store = self._open_store()
        self.prediction_log = self._open_prediction_log()
        self.swapper: ModelSwapper[ServedModel] = ModelSwapper(
            str(self.bento_model.tag),
            self._load,
            (lambda: read_pinned_tag(CONFIG.pinned_tag_file)) if CONFIG.pinned_tag_file else (lambda: None),
            CONFIG.swap_poll_s,
            on_swap=settle_heap,
        )
        self.swapper.start()
        # Experiment arms other than the pinned model: fixed versions, loaded beside it.
        self.arm_models: dict[str, ServedModel] = {}
        for arm in EXPERIMENT.arms if EXPERIMENT is not None else ():
            if arm.model_tag is not None and arm.model_tag not in self.arm_models:
                self.arm_models[arm.model_tag] = self._load(arm.model_tag)
        self.shadows = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reclake-shadow")
        self.shadow_slots = threading.Semaphore(SHADOW_QUEUE)
        self.shadow_dropped = 0
        # The models are loaded and warm: keep the garbage collector off their objects.
        logger.info("heap settled in %.2f s", settle_heap())

    def _model_of(self, tag: str | None) -> ServedModel:
        return self.swapper.current if tag is None else self.arm_models[tag]

    def _route(self, user_id: str | None) -> tuple[str | None, ServedModel]:
        """The experiment arm answering ``user_id`` (sticky hash; ``serving.experiments``)
        and its model; without an experiment, (None, the pinned model)."""
        if EXPERIMENT is None or user_id is None:
            return None, self.swapper.current
        arm = EXPERIMENT.arm(EXPERIMENT.assign(user_id))
        return arm.name, self._model_of(arm.model_tag)

    def _shadow(
        self, arm: str | None, score: Callable[[ServedModel], Any], log: Callable[[str, ServedModel, Any], None]
    ) -> None:
        """Score the request with each shadow arm of ``arm`` off the request path (one
        background thread, bounded backlog) and log what they would have answered."""
        if EXPERIMENT is None:
            return
        for shadow in EXPERIMENT.shadow_arms(arm):
            if not self.shadow_slots.acquire(blocking=False):
                self.shadow_dropped += 1
                continue

            def run(shadow=shadow) -> None:
                try:
                    model = self._model_of(shadow.model_tag)
                    log(shadow.name, model, score(model))
                except Exception:  # noqa: BLE001 - a shadow must never affect serving
                    logger.exception("shadow arm %s failed", shadow.name)
                finally:
                    self.shadow_slots.release()

            self.shadows.submit(run)

    @staticmethod
    def _open_store():
        if not CONFIG.online_store_url:
            return None
        from serving.online_store import open_store

        return open_store(CONFIG.online_store_url)

    @staticmethod
    def _open_prediction_log():
        if not CONFIG.prediction_log_root:
            return None
        from serving.prediction_log import PredictionLogger

        options = {"client_kwargs": {"endpoint_url": CONFIG.s3_endpoint_url}} if CONFIG.s3_endpoint_url else None
        return PredictionLogger(CONFIG.prediction_log_root, INITIAL_METADATA["source"], storage_options=options)

    def _load(self, tag: str) -> ServedModel:
        """Load ``tag`` from the model store and warm it up; refuse a model whose request
        inputs differ from the ones this service was started with (its schema)."""
        from serving.scoring import ServedModel

        if tag == str(self.bento_model.tag):
            path = self.bento_model.path_of(SAVEDMODEL_SUBDIR)
        else:
            path = bentoml.models.get(tag).path_of(SAVEDMODEL_SUBDIR)
        model = ServedModel(tag, path, self.store)
        if model.metadata["inputs"].get("predict") != INITIAL_METADATA["inputs"]["predict"]:
            raise ValueError(
                f"{tag} takes other request inputs than the served schema; restart the service to serve it"
            )
        seconds = model.warm_up()
        logger.info("loaded %s (model version %s), warmed up in %.2f s", tag, model.model_version, seconds)
        return model

    def __is_ready__(self) -> bool:
        """Ready when the online store (if any) answers."""
        if self.store is None:
            return True
        from serving.online_store import StoreUnavailable

        try:
            self.store.ping()
        except StoreUnavailable as error:
            logger.warning("not ready: %s", error)
            return False
        return True

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.swapper.stop()
        self.shadows.shutdown(wait=True)
        if self.prediction_log is not None:
            self.prediction_log.close()
        if self.store is not None:
            self.store.close()

    def _log(
        self,
        endpoint: str,
        request_id: str,
        model: ServedModel,
        user_id: str | None,
        scored,
        started: float,
        arm: str | None,
        shadow_of: str | None = None,
    ) -> None:
        if self.prediction_log is None:
            return
        from serving.prediction_log import build_record

        self.prediction_log.log(
            build_record(
                request_id=request_id,
                endpoint=endpoint,
                model_version=model.model_version,
                arm=arm,
                user_id=user_id,
                features=scored.features,
                scores=scored.scores,
                items=scored.items,
                fallback=scored.fallback,
                latency_ms=(time.perf_counter() - started) * 1000,
                shadow_of=shadow_of,
            )
        )

    @bentoml.api(route="/recommend")
    def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Top-k items for one user, re-ranked by the ranker (popularity for unknown users)."""
        from serving.online_store import StoreUnavailable

        started = time.perf_counter()
        arm, model = self._route(request.user_id)
        if not model.can_recommend:
            return error_response(
                400,
                f"the {model.spec.source} model cannot recommend: the source has no user and item ids; use /predict",
            )
        if request.k > model.item_count:
            return error_response(400, f"k: at most {model.item_count} (the indexed items), got {request.k}", "k")
        now = datetime.now(UTC)
        context = fill_derived_context(dict(request.context), now.hour, now.weekday())
        try:
            scored = model.recommend(request.user_id, request.k, context)
        except StoreUnavailable as error:
            return error_response(503, f"the online feature store is unavailable: {error}")
        request_id = uuid.uuid4().hex
        self._log("recommend", request_id, model, request.user_id, scored, started, arm)
        self._shadow(
            arm,
            lambda shadow: shadow.recommend(request.user_id, request.k, context),
            lambda name, shadow, result: self._log(
                "recommend", f"{request_id}-{name}", shadow, request.user_id, result, started, name, request_id
            ),
        )
        return RecommendResponse(
            request_id=request_id,
            user_id=request.user_id,
            items=[
                RecommendedItem(item_id=item, score=score, rank=rank)
                for rank, (item, score) in enumerate(zip(scored.items, scored.scores, strict=True), start=1)
            ],
            fallback=scored.fallback,
            defaults_used=scored.defaults_used,
            arm=arm,
            model_version=model.model_version,
        )

    @bentoml.api(route="/predict")
    def predict(self, request: PredictRequest, /) -> PredictResponse:
        """The ranker's score for each row of request features."""
        from serving.online_store import StoreUnavailable

        started = time.perf_counter()
        rows = [row.model_dump(exclude={"event_id"}) for row in request.rows]  # event ids are logged, not scored
        event_ids = [row.event_id for row in request.rows]
        user_id = str(rows[0]["user_id"]) if "user_id" in rows[0] else None
        arm, model = self._route(user_id)  # the rows' first user decides the arm
        try:
            scored = _with_event_ids(model.predict(rows), event_ids)
        except StoreUnavailable as error:
            return error_response(503, f"the online feature store is unavailable: {error}")
        request_id = uuid.uuid4().hex
        self._log("predict", request_id, model, user_id, scored, started, arm)
        self._shadow(
            arm,
            lambda shadow: _with_event_ids(shadow.predict(rows), event_ids),
            lambda name, shadow, result: self._log(
                "predict", f"{request_id}-{name}", shadow, user_id, result, started, name, request_id
            ),
        )
        label = model.metadata["label"]
        return PredictResponse(
            request_id=request_id,
            scores=scored.scores,
            score_kind="probability" if label["kind"] == "binary" else label["column"],
            tasks=scored.tasks or None,
            defaults_used=scored.defaults_used,
            arm=arm,
            model_version=model.model_version,
        )

    @bentoml.api(route="/bid")
    def bid(self, request: BidRequest, /) -> BidResponse:
        """OpenRTB 2.5 subset (``serving.openrtb``): one bid per impression, priced by the
        campaign's strategy (``serving.bidding``) from the model's pCTR (and pCVR); 204
        when no impression gets a bid."""
        from serving.online_store import StoreUnavailable

        started = time.perf_counter()
        campaign = CAMPAIGNS.get(request.ext.campaign_id)
        if campaign is None:
            known = ", ".join(sorted(CAMPAIGNS)) or "none (set RECLAKE_CAMPAIGNS)"
            return error_response(
                404, f"unknown campaign {request.ext.campaign_id!r}; configured: {known}", "ext.campaign_id"
            )
        arm, model = self._route(request.user.id)
        if model.metadata["label"]["kind"] != "binary":
            return error_response(
                400,
                f"the {model.spec.source} model predicts {model.metadata['label']['column']}, not clicks: it cannot bid",
            )
        if self.store is None:
            return error_response(503, "bidding keeps budgets in the online store: set RECLAKE_ONLINE_STORE_URL")
        rows = []
        now = datetime.now(UTC)
        for index, imp in enumerate(request.imp):
            raw = imp_features(request, imp, campaign.item_id, model.context_dtypes)
            derived = fill_derived_context({}, now.hour, now.weekday())
            raw.update(
                {name: value for name, value in derived.items() if name in model.context_dtypes and name not in raw}
            )
            try:
                rows.append(REQUESTS.row.model_validate(raw).model_dump())
            except ValidationError as error:
                field, message = validation_error(error, f"imp.{index}.features")
                return error_response(400, f"invalid request: {message}", field)
        try:
            scored = model.predict(rows)
            decisions = self._place_bids(campaign, request, scored)
        except StoreUnavailable as error:
            return error_response(503, f"the online feature store is unavailable: {error}")
        request_id = uuid.uuid4().hex
        self._log("bid", request_id, model, request.user.id, scored, started, arm)
        pcvrs = scored.tasks.get("pcvr") or [None] * len(rows)
        bids = [
            Bid(
                id=f"{request_id}-{index}",
                impid=imp.id,
                price=price,
                adid=rows[index].get("item_id"),
                crid=rows[index].get("item_id"),
                ext=BidExt(
                    pctr=scored.scores[index],
                    pcvr=pcvrs[index],
                    strategy=campaign.strategy,
                    arm=arm,
                    model_version=model.model_version,
                    campaign_id=campaign.campaign_id,
                ),
            )  # fmt: skip
            for index, (imp, price) in enumerate(zip(request.imp, decisions, strict=True))
            if price is not None
        ]
        if not bids:
            return Response(status_code=204)
        return bid_response(request.id, bids)

    def _place_bids(self, campaign: Campaign, request: BidRequest, scored) -> list[float | None]:
        """Each impression's CPM price or None. A bid reserves its price's cost in the
        campaign's spend of the day in the online store (shared by every worker) before
        it is sent; one that would take the spend past the budget is undone and not sent,
        so the budget is never overspent however many workers bid."""
        now = datetime.now(UTC)
        day_fraction = (now.hour * 3600 + now.minute * 60 + now.second) / 86400
        spend_key = f"spend:{campaign.campaign_id}:{now.date().isoformat()}"
        namespace = self.swapper.current.namespace
        spent = self.store.get_float(namespace, spend_key)
        pcvrs = scored.tasks.get("pcvr") or [None] * len(request.imp)
        prices: list[float | None] = []
        for imp, pctr, pcvr in zip(request.imp, scored.scores, pcvrs, strict=True):
            decision = decide_bid(campaign, min(max(pctr, 0.0), 1.0), pcvr, imp.bidfloor, spent, day_fraction)
            if decision.price is None:
                prices.append(None)
                continue
            cost = decision.price / IMPRESSIONS_PER_PRICE
            total = self.store.incr_float(namespace, spend_key, cost)
            if total > campaign.daily_budget + 1e-9:
                spent = self.store.incr_float(namespace, spend_key, -cost)
                prices.append(None)
                continue
            spent = total
            prices.append(decision.price)
        return prices

    @bentoml.api(route="/model_info")
    def model_info(self) -> ModelInfoResponse:
        """Which model is served: bento tag, version, source, inputs, training window, metrics."""
        model = self.swapper.current
        metadata = model.metadata
        features_version = None
        if self.store is not None:
            from serving.online_store import StoreUnavailable

            try:
                features_version = self.store.served_version(model.namespace)
            except StoreUnavailable:
                features_version = None
        return ModelInfoResponse(
            bento_model_tag=model.tag,
            model_version=model.model_version,
            source=metadata["source"],
            trained_on=[str(day) for day in metadata["trained_on"]],
            evaluated_on=str(metadata["evaluated_on"]),
            item_count=model.item_count,
            inputs=metadata["inputs"],
            metrics=metadata["metrics"],
            online_store=self.store.describe() if self.store is not None else None,
            online_features_version=features_version,
            swaps=self.swapper.swaps,
            prediction_log=self.prediction_log.stats() if self.prediction_log is not None else None,
            experiment=EXPERIMENT.describe() if EXPERIMENT is not None else None,
            campaigns=sorted(CAMPAIGNS),
            worker_pid=os.getpid(),
        )


RecommenderService.add_asgi_middleware(
    RequestGuard,
    routes={"/recommend": REQUESTS.recommend, "/predict": REQUESTS.predict, "/bid": BidRequest, "/model_info": None},
    openapi=functools.partial(
        complete_openapi,
        responses={
            "/recommend": RecommendResponse,
            "/predict": PredictResponse,
            "/bid": BidResponse,
            "/model_info": ModelInfoResponse,
        },
        bodies_required={"/recommend": True, "/predict": True, "/bid": True},
        no_content={"/bid": "No bid on any impression (OpenRTB no-bid)"},
    ),
    max_in_flight=CONFIG.max_in_flight,
    queue_timeout_ms=CONFIG.queue_timeout_ms,
    max_body_bytes=CONFIG.max_body_bytes,
)
