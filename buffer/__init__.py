"""The durable outbox: SQLite, one writer, delete only on broker acknowledgement.

Knows nothing of ``edge`` or ``drivers``; usable on its own.
"""
