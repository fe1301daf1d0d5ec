"""Security: who calls (SecurityContext), token checks, and the access policy."""
