"""The /ws endpoint: connections, the local hub, the protocol codec and commands."""
