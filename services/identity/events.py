"""Handlers of other contexts' events. The identity context consumes none and publishes none."""
