"""Rules of the reducer, one module per domain; each registers itself with
``ledger.reducer.rule``."""
