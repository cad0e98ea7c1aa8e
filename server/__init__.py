"""County server: ingest of agent events, stock ledger, climate history, alerts, web."""

__version__ = "0.1.0"
