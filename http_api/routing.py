"""A route table: each handler declared once with its schemas, auth rule and docs.

The same declarations register the aiohttp routes (with and without a trailing slash), validate
requests, and generate the OpenAPI document, so what is documented is what is enforced.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

import asyncpg
import orjson
import pydantic
from aiohttp import web

from reelwire.appkeys import SERVICES, SETTINGS
from reelwire.domain import accounts, rates, tokens
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import (
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from reelwire.domain.paging import PageRequest
from reelwire.domain.schemas.common import (
    Input,
    contract_message,
    field_errors,
    parse_uuid,
    unstorable_fields,
)

B = TypeVar("B", bound=pydantic.BaseModel)
AuthRule = Literal["required", "optional", "none"]
_PARAM_RE = re.compile(r"\{([^}:]+)(:[^}]*)?\}")


@dataclass
class Call(Generic[B]):
    """One validated request, as a handler sees it."""

    request: web.Request
    services: Services
    principal: Principal | None
    body: B
    query: Any

    @property
    def user(self) -> Principal:
        """The caller, on routes that require auth."""
        assert self.principal is not None, "route does not require auth"
        return self.principal

    def path_uuid(self, name: str, what: str = "Resource", message: str | None = None) -> UUID:
        """A UUID path parameter; anything else cannot name a row, so it is a 404."""
        return parse_uuid(self.request.match_info[name], message or f"{what} not found")


def page_of(query: Any) -> PageRequest:
    """The page or cursor a list query (a PageQuery) asks for."""
    return PageRequest(page=query.page, limit=query.limit, cursor=query.cursor)


Handler = Callable[[Call[Any]], Awaitable[dict[str, Any] | web.StreamResponse]]


@dataclass
class Route:
    """A declared route."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: AuthRule = "none"
    body: type[pydantic.BaseModel] | None = None
    body_required: bool = True
    query: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    form: type[pydantic.BaseModel] | None = None
    form_file: str | None = None
    raw_body: bool = False  # the handler reads the body itself (signed webhooks, uploads)
    rate: str | None = "general"  # the rate limit bucket (settings.rate_limits), None for none
    head: bool = False  # a GET that also answers HEAD (media players and caches ask)
    # Served by another part of the app (the WebSocket transport serves its AsyncAPI document),
    # registered before this table; declared here for the OpenAPI document and CORS.
    served_elsewhere: bool = False
    # Add the CLUTCH API's `success: true` when the response declares it; off for routes of
    # contracts whose bodies have no envelope even though they share a response model.
    success_envelope: bool = True
    # The message a client contract documents for any authentication failure on this route
    # (the Stories and direct-upload APIs say "Unauthorized"); the reason goes in details.
    unauthorized: str | None = None

    @property
    def openapi_path(self) -> str:
        """The path with aiohttp's `{name:regex}` written as OpenAPI's `{name}`."""
        return _PARAM_RE.sub(lambda m: "{" + m.group(1) + "}", self.path)

    @property
    def envelope(self) -> bool:
        """Whether the answer carries the CLUTCH API's `success: true` (domain operations return
        plain data; the envelope is this transport's business)."""
        return (
            self.success_envelope
            and self.response is not None
            and "success" in self.response.model_fields
        )

    @property
    def path_params(self) -> list[str]:
        """Names of the path parameters."""
        return [m.group(1) for m in _PARAM_RE.finditer(self.path)]


@dataclass
class RouteTable:
    """Collects routes; `register` adds them to an app."""

    routes: list[Route] = field(default_factory=list)

    def route(self, method: str, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a handler for `method path`."""

        def decorate(handler: Handler) -> Handler:
            summary = options.pop("summary", None) or (handler.__doc__ or "").strip()
            self.routes.append(Route(method, path, handler, summary=summary, **options))
            return handler

        return decorate

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a GET route."""
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a POST route."""
        return self.route("POST", path, **options)

    def put(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a PUT route."""
        return self.route("PUT", path, **options)

    def patch(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a PATCH route."""
        return self.route("PATCH", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Declare a DELETE route."""
        return self.route("DELETE", path, **options)

    def extend(self, other: RouteTable) -> None:
        """Take another table's routes."""
        self.routes.extend(other.routes)

    def register(self, app: web.Application) -> list[web.Resource]:
        """Add every route to `app`, each also answering with a trailing slash.

        All methods of a path live on one aiohttp resource (and its trailing-slash twin on
        another): CORS preflights are answered per resource, so a method added to a second
        resource for the same path would be refused."""
        resources: dict[str, web.Resource] = {}
        for route in self.routes:
            paths = [route.path]
            if route.path != "/" and not route.path.endswith("/"):
                paths.append(route.path + "/")
            if route.served_elsewhere:
                for path in paths:
                    resources[path] = _served_elsewhere(app, route.method, path)
                continue
            view = _make_view(route)
            for path in paths:
                if path not in resources:
                    resources[path] = app.router.add_resource(path)
                resources[path].add_route(route.method, view)
                if route.head:
                    resources[path].add_route("HEAD", view)
        return list(resources.values())


def _served_elsewhere(app: web.Application, method: str, path: str) -> web.Resource:
    """The resource another part of the app registered for `method path`."""
    for resource in app.router.resources():
        if not isinstance(resource, web.Resource) or resource.canonical != path:
            continue
        if any(route.method == method for route in resource):
            return resource
    raise RuntimeError(f"{method} {path} is served elsewhere, but nothing registered it yet")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response encoded with orjson."""
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if any."""
    return tokens.bearer_token(request.headers.get("Authorization", ""))


def _make_view(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def view(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        try:
            principal = await _principal(request, services, route.auth)
        except Unauthorized as exc:
            if route.unauthorized is None:
                raise
            raise Unauthorized(route.unauthorized, details={"reason": exc.message}) from None
        limit_headers = await rates.check(
            services, route.rate, principal, request.remote or "unknown"
        )
        query = _validate(route.query, dict(request.query), "query") if route.query else None
        body = await _read_body(request, route) if route.body and not route.raw_body else None
        try:
            result = await route.handler(Call(request, services, principal, body, query))
        except asyncpg.ForeignKeyViolationError:
            # A row the request refers to went away between the checks and the write: most
            # often the caller's own account, deleted while its token was still believed.
            raise await accounts.missing_reference(services, principal) from None
        if isinstance(result, web.StreamResponse):
            if not result.prepared:
                result.headers.update(limit_headers)
            return result
        if route.envelope and isinstance(result, dict):
            result = {"success": True, **result}
        return json_response(result, status=route.status, headers=limit_headers)

    view.__name__ = route.handler.__name__
    view.__doc__ = route.summary
    return view


async def _principal(request: web.Request, services: Services, rule: AuthRule) -> Principal | None:
    if rule == "none":
        return None
    token = bearer_token(request)
    if token is None:
        if rule == "required":
            raise Unauthorized("Authentication required")
        return None
    return await accounts.authenticate(services, token)


async def _read_body(request: web.Request, route: Route) -> pydantic.BaseModel:
    assert route.body is not None
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_json_bytes
        raise PayloadTooLarge(
            f"Request body is larger than {limit} bytes", details={"max_bytes": limit}
        ) from None
    if not raw.strip():
        if route.body_required:
            raise ValidationFailed("Request body is required")
        return route.body()
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"Expected Content-Type application/json, got {request.content_type or 'none'}"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed("Malformed JSON body", details={"reason": str(exc)}) from None
    if not isinstance(data, dict):
        raise ValidationFailed("Request body must be a JSON object")
    body: pydantic.BaseModel = _validate(route.body, data, "body")
    return body


def _validate(model: type[pydantic.BaseModel], data: dict[str, Any], where: str) -> Any:
    return validate_input(model, data, where)


def validate_input(model: type[pydantic.BaseModel], data: dict[str, Any], where: str) -> Any:
    """`data` validated by `model`; 400 VALIDATION_ERROR with `field_errors` otherwise. Models
    deriving from `Input` refuse text PostgreSQL cannot store themselves; for any other model the
    same rule is applied here, so no route lets a NUL through to the database."""
    if not issubclass(model, Input) and (bad := unstorable_fields(data)):
        raise ValidationFailed("Request validation failed", field_errors=bad, details={"in": where})
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationFailed(
            contract_message(model, exc) or "Request validation failed",
            field_errors=field_errors(exc),
            details={"in": where},
        ) from None
