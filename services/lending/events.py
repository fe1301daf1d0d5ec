"""Handlers of other contexts' events. The lending context consumes none yet; it publishes
LoanDisbursed and LoanDisbursementFailed (protos/ogpgy/lending/v1/events.proto)."""
