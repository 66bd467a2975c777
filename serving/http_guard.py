"""The HTTP edge of the service: one error envelope, input limits and load shedding.

``RequestGuard`` is an ASGI middleware in front of the API routes. For each ``POST`` to
a guarded route it, in order:

1. refuses a body that is not JSON (``Content-Type`` other than ``application/json``,
   e.g. multipart) with 415, and a body over the size limit with 413;
2. parses the JSON once and validates it against the route's request model (the same
   pydantic model the OpenAPI schema is generated from): 400 naming the field;
3. sheds load: a worker takes at most ``max_in_flight`` requests; a request that cannot
   get a slot within ``queue_timeout_ms`` gets a 503 with ``Retry-After`` straight away
   instead of waiting behind work whose clients may already have gone (on a connection
   kept open: a shed request must cost little).

Every error the service sends (4xx, 503, and a 500 from a bug), whoever produced it
(this guard, a handler, or BentoML itself, e.g. 404), has one body shape, the error envelope
``{"error": <message>, "field": <dotted field or null>, "status": <code>}`` (plus
``retry_after_s`` on a 503), documented in docs/data-contracts.md. A client error is one
log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

logger = logging.getLogger("reclake.serving")

RETRY_AFTER_S = 1
OPENAPI_PATH = "/docs.json"
JSON_TYPES = ("application/json", "")  # no Content-Type is read as JSON, as BentoML does


def error_body(status: int, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The error envelope."""
    return {"error": message, "field": field, "status": status, **extra}


def error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    """An error envelope response; a 503 says when to retry (header and body)."""
    if status == 503:
        return JSONResponse(
            error_body(status, message, field, retry_after_s=RETRY_AFTER_S),
            status_code=status,
            # The connection stays open: under overload most answers are 503s, and closing
            # each one costs a new accept per retry (measured: goodput at twice the peak
            # fell from 87% to 74% of the peak). Spreading clients over workers is the load
            # balancer's job (bench/serving_load.py spreads its connections as one would).
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return JSONResponse(error_body(status, message, field), status_code=status)


def validation_error(error: ValidationError, where: str = "") -> tuple[str, str]:
    """(field, message) of a pydantic error: the first offending field, every problem listed."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        problems.append(f"{location or '<body>'}: {item['msg']}")
    first = ".".join(str(part) for part in error.errors()[0]["loc"]) if error.errors() else ""
    field = ".".join(part for part in (where, first) if part) or None
    return field, "; ".join(problems)


class RequestGuard:
    """ASGI middleware guarding the JSON API routes (see the module docstring).

    Args:
        app: the ASGI app it wraps.
        routes: path -> request model validated before the handler runs (None: body
            must only be JSON, or empty).
        max_in_flight: requests this worker runs or queues at once.
        queue_timeout_ms: the longest a request waits for a slot before its 503.
        max_body_bytes: the body size limit.
        openapi: rewrites BentoML's OpenAPI document on ``GET /docs.json``
            (``serving.openapi.complete_openapi``); None: served as generated.
    """

    def __init__(
        self,
        app: Any,
        routes: Mapping[str, type[BaseModel] | None],
        max_in_flight: int,
        queue_timeout_ms: float,
        max_body_bytes: int,
        openapi: Callable[[dict], dict] | None = None,
    ) -> None:
        self.app = app
        self.openapi = openapi
        self.routes = dict(routes)
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # requests holding a slot
        self._waiters: deque[asyncio.Future[bool]] = deque()  # requests waiting for one, oldest first
        self.queue_timeout_s = queue_timeout_ms / 1000
        self.max_body_bytes = max_body_bytes
        self.shed = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == OPENAPI_PATH and self.openapi is not None:
            return await self.app(scope, receive, _DocumentSend(send, self.openapi))
        if path not in self.routes or scope["method"] != "POST":
            return await self.app(scope, receive, _EnvelopeSend(send, path))
        rejected = self._check_headers(scope)
        if rejected is None:
            body, rejected = await self._read_body(receive)
        if rejected is None:
            rejected = self._validate(path, body)
        if rejected is not None:
            return await self._reject(rejected, path, scope, receive, send)
        if not await self._take_slot():
            self.shed += 1
            response = error_response(503, "overloaded: try again shortly")
            return await response(scope, receive, send)
        try:
            await self.app(scope, _replay(body, receive), _EnvelopeSend(send, path))
        finally:
            self._release_slot()

    async def _take_slot(self) -> bool:
        """Take one of the worker's slots, waiting at most the queue timeout, first come
        first served (the event loop is single-threaded, so plain counters are exact).
        A waiter is woken when a slot frees, or at its deadline with False."""
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        deadline = loop.call_later(self.queue_timeout_s, _settle, waiter, False)
        try:
            return await waiter
        except asyncio.CancelledError:  # the client left while waiting
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release_slot()  # a slot was handed over just before: pass it on
            raise
        finally:
            deadline.cancel()

    def _release_slot(self) -> None:
        """Hand the slot to the longest waiter still waiting, or free it."""
        while self._waiters:
            if _settle(self._waiters.popleft(), True):
                return
        self.in_flight -= 1

    def _check_headers(self, scope: dict) -> JSONResponse | None:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in JSON_TYPES:
            return error_response(415, f"the body must be JSON (Content-Type: application/json), got {media_type!r}")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return error_response(413, f"the body is {length} bytes; the limit is {self.max_body_bytes}")
        return None

    async def _read_body(self, receive: Any) -> tuple[bytes, JSONResponse | None]:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", error_response(400, "the client disconnected before sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", error_response(413, f"the body is over the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None

    def _validate(self, path: str, body: bytes) -> JSONResponse | None:
        model = self.routes[path]
        if not body.strip():
            return None if model is None else error_response(400, "the body is empty; send a JSON object")
        if model is None:
            try:
                json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                return error_response(400, f"the body is not valid JSON: {error}")
            return None
        try:
            model.model_validate_json(body)  # parses and validates in one pass (pydantic-core)
        except ValidationError as error:
            invalid_json = [e for e in error.errors() if e["type"] == "json_invalid"]
            if invalid_json:
                return error_response(400, f"the body is not valid JSON: {invalid_json[0]['msg']}")
            field, message = validation_error(error)
            return error_response(400, f"invalid request: {message}", field)
        return None

    async def _reject(self, response: JSONResponse, path: str, scope: dict, receive: Any, send: Any) -> None:
        body = json.loads(response.body)
        logger.info("%s %s: %s", body["status"], path, body["error"])
        await response(scope, receive, send)


def _settle(waiter: asyncio.Future[bool], granted: bool) -> bool:
    """Answer a slot waiter unless it is answered or cancelled already; whether it was."""
    if waiter.done():
        return False
    waiter.set_result(granted)
    return True


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that hands the already-read body to the app, then the connection's own."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _DocumentSend:
    """Passes a ``/docs.json`` answer through ``rewrite`` (a 200 JSON body only)."""

    def __init__(self, send: Any, rewrite: Callable[[dict], dict]) -> None:
        self.send, self.rewrite = send, rewrite
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] == 200:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            return await self.send(message)
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        encoded = json.dumps(self.rewrite(json.loads(b"".join(self.chunks)))).encode()
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        await self.send({**self.start, "headers": [*headers, (b"content-length", str(len(encoded)).encode())]})
        await self.send({"type": "http.response.body", "body": encoded})


class _EnvelopeSend:
    """Rewrites an error body produced downstream (BentoML's own errors) into the envelope."""

    def __init__(self, send: Any, path: str) -> None:
        self.send = send
        self.path = path
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            if status >= 400:
                self.start = message
                return
            return await self.send(message)
        if self.start is None or message["type"] != "http.response.body":
            return await self.send(message)
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = self.start["status"]
        raw = b"".join(self.chunks)
        body = _as_envelope(status, raw)
        if body is None:  # already an envelope, or not JSON: pass through unchanged
            await self.send(self.start)
            return await self.send({"type": "http.response.body", "body": raw})
        logger.info("%s %s: %s", status, self.path, body["error"])
        encoded = json.dumps(body).encode()
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() not in (b"content-length", b"content-type")]
        headers += [(b"content-length", str(len(encoded)).encode()), (b"content-type", b"application/json")]
        if status == 503 and not any(k.lower() == b"retry-after" for k, _ in headers):
            headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": encoded})


def _as_envelope(status: int, raw: bytes) -> dict[str, Any] | None:
    """The envelope for an error body BentoML or Starlette wrote, or None if it already is one."""
    try:
        document = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        document = {"error": raw.decode("utf-8", "replace").strip()}
    if isinstance(document, list) and document:  # BentoML wraps some errors in a 1-tuple
        document = document[0]
    if isinstance(document, dict) and {"error", "field", "status"} <= document.keys():
        return None
    message = document.get("error") if isinstance(document, dict) else None
    if not message:
        message = str(document.get("detail")) if isinstance(document, dict) and document.get("detail") else ""
    extra = {"retry_after_s": RETRY_AFTER_S} if status == 503 else {}
    return error_body(status, message or f"HTTP {status}", None, **extra)
