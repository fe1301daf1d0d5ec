"""Notification context: tells customers by e-mail what other contexts' events mean for them."""
