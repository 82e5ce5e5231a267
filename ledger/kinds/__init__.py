"""Entry kinds, one module per domain; ``ledger.entries.AnyBody`` is their union."""
