"""The request and response models of the public APIs, one module per resource.

REST validates its bodies, queries and forms with them and generates `/api/openapi.json` from
them; the WebSocket protocol's commands reuse the same bodies. `common` holds what every
resource shares: the `Input` base (no text PostgreSQL cannot store), pagination, the error
object, and turning a client's ids and pydantic's errors into answers.
"""
