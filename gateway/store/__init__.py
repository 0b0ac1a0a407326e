"""The store: its ports (`ports.py`) and their SQLite and PostgreSQL implementations."""
