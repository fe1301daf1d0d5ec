"""Security (pattern 13): who calls (SecurityContext), token checks, and the access policy."""
