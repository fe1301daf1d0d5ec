"""Resilience: circuit breakers (pybreaker underneath, made correct for asyncio) and retries."""
