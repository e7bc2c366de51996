"""What Redis keeps for speed and for sharing between processes, never as the source of truth:
read caches fenced on every write (`reads`), live view counts written behind to PostgreSQL
(`views`) and rate limits (`rate_limits`). Each gets by without Redis while it is away (see
`pubsub.outbox`): PostgreSQL answers, and limits are kept per process."""
