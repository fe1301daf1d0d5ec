"""Databases: pools that never block the event loop, versioned migrations, idempotency keys."""
