"""Handlers of other contexts' events. The interest context consumes none; it publishes
InterestPosted when a business date's run completes."""
