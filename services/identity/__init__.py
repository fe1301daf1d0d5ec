"""Identity context: users, roles, passwords and signed access tokens."""
