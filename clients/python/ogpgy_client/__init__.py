"""The Python client of OgPgy Bank mesh (the generated contracts are the `ogpgy` package)."""

from ogpgy_client.client import DEFAULT_OPTIONS, ENVIRONMENT, BankClient, BankError, FieldViolation

__all__ = ["DEFAULT_OPTIONS", "ENVIRONMENT", "BankClient", "BankError", "FieldViolation"]
