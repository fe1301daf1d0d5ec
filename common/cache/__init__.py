"""Multi-level cache: L1 in process (cachetools), L2 shared (Redis), invalidation over pub/sub."""
