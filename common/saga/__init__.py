"""Durable sagas: a compensation log in the database, resumable after a crash at any point."""
