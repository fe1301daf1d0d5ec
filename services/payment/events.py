"""Handlers of other contexts' events. The payment context consumes none yet; it publishes
PaymentQueued, PaymentCompleted and PaymentFailed (protos/ogpgy/payment/v1/events.proto)."""
