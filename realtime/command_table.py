"""How WebSocket commands are declared, registered and dispatched.

As in Home Assistant's `websocket_api`: a handler is declared with `@websocket_command(schema,
auth=..., rate=...)`, which only attaches that metadata to the function (nothing is registered
on import), and whoever builds the endpoint creates a `CommandTable` at start-up and registers
each handler into it explicitly (`realtime.commands.register_commands`). The table then answers
every text frame of a socket through `dispatch`.

`dispatch` parses a frame, validates it against the command's model (the protocol's models live
in `realtime.schemas`, which also generate /api/asyncapi.json), checks authentication, the
account and the rate bucket, calls the handler, and maps any failure to an `error` reply through
`errors.describe`, as REST maps it to its envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import orjson
import pydantic

from realtime import messages
from realtime.connection import Connection
from realtime.schemas import ClientMessage, type_of
from reelwire.domain import accounts, rates
from reelwire.domain.context import Services
from reelwire.domain.errors import Unauthorized, ValidationFailed, describe
from reelwire.domain.schemas.common import field_errors

if TYPE_CHECKING:
    from realtime.hub import Hub

logger = logging.getLogger(__name__)

_SPEC_ATTRIBUTE = "_websocket_command"


@dataclass
class Session:
    """What a command sees: the process's services and hub, and the socket it came from."""

    services: Services
    hub: Hub
    conn: Connection


Handler = Callable[[Session, Any], Awaitable[bytes | None]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class CommandSpec:
    """What `@websocket_command` attaches to a handler."""

    kind: str  # the message `type` it answers (from its schema)
    schema: type[ClientMessage]
    auth: bool = False  # the socket must be authenticated
    rate: str | None = None  # the rate-limit bucket, shared with the REST route it mirrors


def websocket_command(
    schema: type[ClientMessage], *, auth: bool = False, rate: str | None = None
) -> Callable[[H], H]:
    """Declare the function answering the messages `schema` (in `realtime.schemas`) describes.

    Only metadata: register the handler into a `CommandTable` for a socket to reach it.
    """
    spec = CommandSpec(type_of(schema), schema, auth, rate)

    def attach(handler: H) -> H:
        setattr(handler, _SPEC_ATTRIBUTE, spec)
        return handler

    return attach


def command_spec(handler: Handler) -> CommandSpec:
    """The metadata `@websocket_command` attached to a handler."""
    spec = getattr(handler, _SPEC_ATTRIBUTE, None)
    if not isinstance(spec, CommandSpec):
        raise TypeError(f"{handler!r} is not declared with @websocket_command")
    return spec


@dataclass(frozen=True)
class Command:
    """A registered command: its metadata and the function that answers it."""

    spec: CommandSpec
    handler: Handler


class CommandTable:
    """The commands one endpoint answers, by message type."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def register(self, handler: Handler) -> None:
        """Answer the handler's message type with it; a type is registered once."""
        spec = command_spec(handler)
        if spec.kind in self._commands:
            raise ValueError(f"a command for {spec.kind!r} is already registered")
        self._commands[spec.kind] = Command(spec, handler)

    def get(self, kind: str) -> Command | None:
        """The command answering messages of this type, if any."""
        return self._commands.get(kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._commands

    def __iter__(self) -> Iterator[str]:
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)

    async def dispatch(self, session: Session, text: str) -> None:
        """Answer one client message; a bad one gets an error reply."""
        conn = session.conn
        message_id = None
        try:
            try:
                raw = orjson.loads(text)
            except orjson.JSONDecodeError:
                raise ValidationFailed("Message is not valid JSON") from None
            if not isinstance(raw, dict):
                raise ValidationFailed("Message must be a JSON object")
            message_id = raw.get("id") if isinstance(raw.get("id"), int | str) else None
            kind = raw.get("type")
            found = self._commands.get(kind) if isinstance(kind, str) else None
            if found is None:
                raise ValidationFailed(f"Unknown message type {str(kind)[:40]!r}")
            spec = found.spec
            try:
                body = spec.schema.model_validate(raw)
            except pydantic.ValidationError as exc:
                raise ValidationFailed(
                    "Message validation failed", field_errors=field_errors(exc)
                ) from None
            if spec.auth and conn.principal is None:
                raise Unauthorized("Authenticate first (an `auth` message, a ticket or a header)")
            if conn.principal is not None:  # deleted or disabled since the socket authenticated?
                await accounts.require_account(session.services, conn.principal.user_id)
            await rates.check(session.services, spec.rate, conn.principal, conn.remote)
            try:
                answer = await found.handler(session, body)
            except asyncpg.ForeignKeyViolationError:
                # As on REST: most often the caller's own account, deleted while the socket lived.
                raise await accounts.missing_reference(session.services, conn.principal) from None
        except Exception as exc:
            problem = describe(exc)  # the same mapper as REST's envelope
            if problem.unexpected:
                logger.exception("websocket message failed")
            elif problem.status >= 500:
                logger.warning("websocket message: a backend is unavailable: %r", exc)
            conn.send(
                messages.error(
                    message_id, problem.code, problem.message, problem.details, problem.field_errors
                )
            )
            return
        if answer is not None:
            conn.send(answer)
