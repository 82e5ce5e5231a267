"""The witness's HTTP face and the log's HTTP client for witnesses (c2sp.org/tlog-witness).

The protocol itself is ``ledger.witness`` (pure); this package only moves bytes, so a
witness runs on the standard library's HTTP server, free of the web framework.
"""
