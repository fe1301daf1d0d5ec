"""Settings shared by every context in a process."""

from common.config.settings import Settings

__all__ = ["Settings"]
