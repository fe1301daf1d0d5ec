"""VelocityPay: a simulator of the external payment network (not ours), with fault injection."""
