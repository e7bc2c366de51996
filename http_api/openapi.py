"""The OpenAPI 3.1 document, generated from the route table's own schemas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import reelwire
from http_api.routing import Handler, Route
from reelwire.domain.schemas.common import ErrorOut
from reelwire.domain.urls import ASYNCAPI_URL

H = TypeVar("H", bound=Handler)

_REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    400: "Validation failed",
    401: "Missing, invalid or revoked token",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    410: "Gone",
    412: "Unsupported protocol version",
    413: "Body too large",
    415: "Wrong content type",
    423: "Locked: another request is writing",
    429: "Rate limited",
    460: "Checksum mismatch",
    503: "A backend is unavailable",
}
_MEDIA_TYPES: dict[Handler, str] = {}
_EXTRAS: dict[Handler, dict[str, Any]] = {}


def responds_with(media_type: str) -> Callable[[H], H]:
    """Document a handler's success response as `media_type` instead of JSON."""

    def mark(handler: H) -> H:
        _MEDIA_TYPES[handler] = media_type
        return handler

    return mark


def documented(
    *,
    parameters: list[dict[str, Any]] | None = None,
    request_body: dict[str, Any] | None = None,
    success: dict[str, Any] | None = None,
) -> Callable[[H], H]:
    """Document what a route's declaration cannot say (a protocol spoken in headers, such as
    tus): header `parameters`, a non-JSON `request_body`, and the `success` response (its
    headers, no body) in place of the generated one."""

    def mark(handler: H) -> H:
        _EXTRAS[handler] = {
            "parameters": parameters or [],
            "requestBody": request_body,
            "success": success,
        }
        return handler

    return mark


def error_statuses(route: Route) -> list[int]:
    """Every error status the route can answer: its own, those its declaration implies (auth,
    validation, body limits, rate limit) and 500."""
    statuses = set(route.errors) | {500}
    if route.auth != "none":
        statuses.add(401)  # "optional" still refuses a bad token
    if route.body or route.query or route.form:
        statuses.add(400)
    if route.body and not route.raw_body:
        statuses |= {413, 415}
    if route.rate is not None:
        statuses.add(429)
    return sorted(statuses)


def build_openapi(routes: list[Route]) -> dict[str, Any]:
    """One document describing every declared route."""
    models: set[type[BaseModel]] = {ErrorOut}
    for route in routes:
        models.update(
            m for m in (route.body, route.query, route.response, route.form) if m is not None
        )
    ordered = sorted(models, key=lambda m: m.__name__)
    mapping, top = models_json_schema([(m, "validation") for m in ordered], ref_template=_REF)
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return mapping[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.handler.__name__,
            "summary": route.summary,
            "tags": [route.tag],
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in route.path_params
            ],
            "responses": {str(route.status): _success(route, ref)},
        }
        if route.query is not None:
            for name, field in route.query.model_fields.items():
                operation["parameters"].append(
                    {
                        "name": name,
                        "in": "query",
                        "required": field.is_required(),
                        "description": field.description or "",
                        "schema": route.query.model_json_schema()["properties"][name],
                    }
                )
        if route.body is not None:
            operation["requestBody"] = {
                "required": route.body_required,
                "content": {"application/json": {"schema": ref(route.body)}},
            }
        if route.form is not None:
            form_schema: dict[str, Any] = {"allOf": [ref(route.form)]}
            if route.form_file:
                form_schema["allOf"].append(
                    {
                        "type": "object",
                        "required": [route.form_file],
                        "properties": {route.form_file: {"type": "string", "format": "binary"}},
                    }
                )
            operation["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": {"schema": form_schema}},
            }
        if route.auth != "none":
            operation["security"] = [{"bearerAuth": []}] + (
                [{}] if route.auth == "optional" else []
            )
        for status in error_statuses(route):
            operation["responses"][str(status)] = {
                "description": _ERROR_TEXT.get(status, "Server error"),
                "content": {"application/json": {"schema": ref(ErrorOut)}},
            }
        _add_extras(route, operation)
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Reelwire API",
            "version": reelwire.__version__,
            "description": (
                "The REST half of Reelwire. Errors are one envelope, `{success: false, error: "
                "{code, message, details?, field_errors?}}`; authenticate with "
                "`Authorization: Bearer <access_token>` from `/api/auth/login`. The WebSocket "
                f"protocol (`/ws`) is the AsyncAPI document at {ASYNCAPI_URL}."
            ),
        },
        "externalDocs": {
            "description": "The WebSocket protocol (/ws) as an AsyncAPI 3.0 document",
            "url": ASYNCAPI_URL,
        },
        "tags": [{"name": tag} for tag in sorted({route.tag for route in routes})],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _success(route: Route, ref: Callable[[type[BaseModel]], dict[str, Any]]) -> dict[str, Any]:
    media_type = _MEDIA_TYPES.get(route.handler, "application/json")
    if media_type != "application/json":
        schema: dict[str, Any] = {"type": "string"}
    else:
        schema = ref(route.response) if route.response else {"type": "object"}
    return {"description": "OK", "content": {media_type: {"schema": schema}}}


def _add_extras(route: Route, operation: dict[str, Any]) -> None:
    extras = _EXTRAS.get(route.handler)
    if extras is None:
        return
    operation["parameters"].extend(extras["parameters"])
    if extras["requestBody"] is not None:
        operation["requestBody"] = extras["requestBody"]
    if extras["success"] is not None:
        operation["responses"][str(route.status)] = extras["success"]
