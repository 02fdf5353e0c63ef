"""Streams exports between PostgreSQL and object storage."""
