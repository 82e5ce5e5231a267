"""The ``reserve`` command: drives ``ledger`` locally (administrators on the server) or
the service over HTTP (everyone else, signing with their own key)."""
