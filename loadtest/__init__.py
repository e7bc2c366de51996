"""`reelwire loadtest`: many WebSocket viewers (and REST actions) against a server on this
machine, a client tool of its own beside the server it measures."""

from loadtest.tester import add_arguments, run

__all__ = ["add_arguments", "run"]
