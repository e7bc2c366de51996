"""What every resource's models share: the `Input` base (no text PostgreSQL can't store), forms,
pagination, the error object, and turning a client's ids and pydantic's errors into answers.

Response models document what the handlers return; the handlers build the same shapes in
`reelwire.domain.present`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from reelwire.domain.errors import NotFound

# --- text PostgreSQL can store -----------------------------------------------------------------
#
# PostgreSQL `text` cannot hold NUL, and UTF-8 cannot hold an unpaired surrogate. Every request
# model derives from `Input`, whose one validator refuses both in any string of any field (nested
# lists and objects included) before a field's own rules run, so REST bodies, query strings,
# multipart text fields and WebSocket commands all answer 400 naming the field. The OpenAPI
# document states the same rule as a `pattern` on every free-text string.

UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
STORABLE_PATTERN = "^[^\\x00]*$"  # surrogates cannot arrive in UTF-8 JSON, queries or forms
UNSTORABLE_MESSAGE = "Must not contain NUL characters or unpaired surrogates."


def is_storable(value: Any) -> bool:
    """Whether every string in `value` (a string, or lists and dicts of them) can be stored."""
    if isinstance(value, str):
        return UNSTORABLE.search(value) is None
    if isinstance(value, list | tuple):
        return all(is_storable(item) for item in value)
    if isinstance(value, dict):
        return all(is_storable(k) and is_storable(v) for k, v in value.items())
    return True


def unstorable_fields(data: dict[str, Any]) -> dict[str, list[str]]:
    """`field_errors` for the top-level fields of `data` holding text that cannot be stored."""
    return {str(k): [UNSTORABLE_MESSAGE] for k, v in data.items() if not is_storable(v)}


def _storable_schema(node: Any) -> None:
    """Add STORABLE_PATTERN to every free-text string schema under `node`."""
    if isinstance(node, list):
        for item in node:
            _storable_schema(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and not {"pattern", "enum", "const", "format"} & node.keys():
        node["pattern"] = STORABLE_PATTERN
    for key in ("properties", "items", "anyOf", "oneOf", "allOf", "additionalProperties"):
        child = node.get(key)
        if isinstance(child, dict) and key == "properties":
            for value in child.values():
                _storable_schema(value)
        elif child is not None:
            _storable_schema(child)


def input_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The `Input` rule in a model's JSON schema (a `json_schema_extra` hook)."""
    for field_schema in schema.get("properties", {}).values():
        _storable_schema(field_schema)


class Input(BaseModel):
    """Every request model (body, query, form, WebSocket command) derives from this: no field
    accepts text PostgreSQL cannot store."""

    model_config = ConfigDict(json_schema_extra=input_schema)

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if not is_storable(value):
            raise ValueError(UNSTORABLE_MESSAGE)
        return value


class Strict(Input):
    """Unknown fields are an error: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _form_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    input_schema(schema, model)
    file_field = getattr(model, "file_field", None)
    if file_field:
        schema.setdefault("properties", {})[file_field] = {
            "type": "string",
            "format": "binary",
            "description": "The file",
        }


class Form(Strict):
    """A multipart form's text fields; the document also names its file part, `file_field`,
    so a client (or a fuzzer) reading the schema can build a form the server accepts."""

    model_config = ConfigDict(json_schema_extra=_form_schema)
    file_field: ClassVar[str] = ""


# --- shared fields, pagination, errors ------------------------------------------------------

NOT_BLANK_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
NOT_BLANK: dict[str, Any] = {"pattern": NOT_BLANK_PATTERN}


def non_empty(value: str) -> str:
    """Text with its surrounding whitespace dropped, refused when nothing is left."""
    value = value.strip()
    if not value:
        raise ValueError("Must not be empty.")
    return value


NonEmpty = Annotated[str, Field(json_schema_extra=NOT_BLANK), AfterValidator(non_empty)]


class PageQuery(Input):
    """The CLUTCH API page pagination, or `cursor` from a previous page's `next_cursor`."""

    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(20, ge=1, le=50)
    cursor: str | None = Field(None, max_length=512)


class Pagination(BaseModel):
    """The CLUTCH API's pagination object; `current_page` is null in cursor mode."""

    current_page: int | None
    total_pages: int
    total_items: int
    has_next: bool
    has_prev: bool


class ErrorBody(BaseModel):
    """The error object inside the envelope."""

    code: str
    message: str
    details: dict[str, Any] | None = None
    field_errors: dict[str, list[str]] | None = None


class ErrorOut(BaseModel):
    """Every error (the CLUTCH API)."""

    success: Literal[False]
    error: ErrorBody


class MessageOut(BaseModel):
    """A plain confirmation."""

    success: bool | None = None
    message: str


class SuccessMessageOut(BaseModel):
    """`{success, message}`."""

    success: bool
    message: str


_FRIENDLY = {
    "missing": "This field is required.",
    "extra_forbidden": "Unknown field.",
    "uuid_parsing": "Must be a UUID.",
    "int_parsing": "Must be a whole number.",
}


def field_errors(exc: pydantic.ValidationError) -> dict[str, list[str]]:
    """Pydantic's errors as the CLUTCH API's `field_errors`: {field: [messages]}."""
    errors: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        name = ".".join(str(part) for part in err["loc"]) or "body"
        message = _FRIENDLY.get(err["type"]) or err["msg"].removeprefix("Value error, ")
        errors.setdefault(name, []).append(message)
    return errors


def contract_message(model: type[BaseModel], exc: pydantic.ValidationError) -> str | None:
    """The message a client contract documents for this failure, if the model names one in
    `contract_messages` ({(field, pydantic error type): message}); else None."""
    messages: dict[tuple[str, str], str] = getattr(model, "contract_messages", {})
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"])
        if (found := messages.get((field, err["type"]))) is not None:
            return found
    return None


def parse_uuid(value: str, not_found: str) -> UUID:
    """An id from a client; text that is not a UUID cannot name a row, so it is a 404."""
    try:
        return UUID(value)
    except ValueError:
        raise NotFound(not_found) from None
