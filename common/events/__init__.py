"""Events: a transactional outbox, a relay, an inbox, and two buses (in-memory, Redis Streams)."""
