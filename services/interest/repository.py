"""The interest context's database: its runs live in the framework's batch_runs table."""

from __future__ import annotations

from common.di import og_component
from common.infrastructure import ContextDatabase


@og_component()
class InterestDatabase(ContextDatabase):
    context = "interest"
    migrations_package = "services.interest"
