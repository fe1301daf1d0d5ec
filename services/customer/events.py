"""Handlers of other contexts' events. The customer context consumes none yet: it only publishes
(CustomerOnboarded, CustomerUpdated; see protos/ogpgy/customer/v1/events.proto)."""
