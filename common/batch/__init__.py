"""Restartable, idempotent batch jobs with progress (pattern 12)."""
