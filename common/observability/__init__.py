"""Traces (OpenTelemetry), metrics (Prometheus) and JSON logs; nothing here knows about banking."""
