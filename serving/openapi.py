"""The published OpenAPI document, made to say what the service really does.

BentoML generates ``/docs.json`` from the API methods' pydantic models, with three gaps
that matter to generated clients and schema-driven tests: request bodies are marked
optional, nullable response fields lose their ``null``, and errors are described with
BentoML's own shapes instead of the error envelope the service sends
(``serving.http_guard``). ``complete_openapi`` fills them in; the guard applies it to
every ``GET /docs.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from serving.schemas import ErrorResponse

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "Invalid request: bad JSON, a missing, unknown or out-of-range field (``field`` names it)",
    "404": "Unknown route",
    "413": "Body over the size limit",
    "415": "Body is not JSON",
    "500": "A bug: the server log has the traceback",
    "503": "Overloaded, or the online feature store is unreachable: retry after ``retry_after_s``",
}


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    components.update(schema.pop("$defs", {}))
    return schema


def complete_openapi(
    document: dict[str, Any],
    responses: Mapping[str, type[BaseModel]],
    bodies_required: Mapping[str, bool],
    no_content: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``document`` (BentoML's OpenAPI) with the real response models, required bodies
    and the error envelope on every ``POST`` route in ``responses`` (path -> model);
    ``no_content``: routes that may answer 204, and when."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorResponse"] = _schema(ErrorResponse, components)
    error = {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="ErrorResponse")}}}
    for path, model in responses.items():
        operation = document.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        if "requestBody" in operation:
            operation["requestBody"]["required"] = bodies_required.get(path, False)
        answers = operation.setdefault("responses", {})
        answers["200"] = {
            "description": "Successful Response",
            "content": {"application/json": {"schema": _schema(model, components)}},
        }
        if no_content and path in no_content:
            answers["204"] = {"description": no_content[path]}
        for status, description in ERROR_STATUSES.items():
            answers[status] = {"description": description, "content": error}
    return document
