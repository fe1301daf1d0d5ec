"""Restartable, idempotent batch jobs with progress."""
