"""What every resource's models share."""

from __future__ import annotations

from uuid import UUID

import pydantic

from reelwire.domain.errors import NotFound

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


def parse_uuid(value: str, not_found: str) -> UUID:
    """An id from a client; text that is not a UUID cannot name a row, so it is a 404."""
    try:
        return UUID(value)
    except ValueError:
        raise NotFound(not_found) from None
