"""Transport-agnostic operations: REST handlers and WebSocket commands both call these."""
