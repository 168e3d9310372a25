"""Durable storage: PIN hashes, lockout counters and the audit log (SQLite by default)."""
