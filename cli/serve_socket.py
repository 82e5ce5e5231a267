"""One listening socket per worker of ``reserve serve --workers N`` (issue #11).

uvicorn's supervisor binds one socket and hands the same socket to every worker. All
workers then wait on it, and whichever event loop wakes first accepts every pending
connection at once (asyncio accepts up to ``backlog`` per wake-up): 50 keep-alive
clients that connect together all land in one worker while the other idles (measured:
50 of 50 connections in one process). With ``SO_REUSEPORT`` each worker listens on a
socket of its own bound to the same address, and the kernel spreads new connections
over them by a hash of the client's address and port (as nginx's ``reuseport`` and
gunicorn's ``--reuse-port`` do).

The supervisor's socket is bound (so a port in use is reported at start, once) but never
listens, so the kernel sends it no connection. uvicorn passes the supervisor's sockets to
each spawned worker by pickling them; this socket pickles as "bind a new one to my
address", so each worker unpickles a fresh socket of its own, which uvicorn then listens
on. A worker that dies takes its own queue of not yet accepted connections with it
(those clients see a reset and retry); the others keep serving.
"""

from __future__ import annotations

import socket
from typing import Any


def reuseport_socket(family: int, address: tuple[Any, ...]) -> ReusePortSocket:
    """A TCP socket bound to ``address`` with SO_REUSEADDR and SO_REUSEPORT, not listening."""
    sock = ReusePortSocket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ReusePortSocket(socket.socket):
    """Pickled (to a spawned worker) as a new socket bound to the same address."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (reuseport_socket, (int(self.family), self.getsockname()))


def supports_reuseport() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def bind_for_workers(host: str, port: int) -> ReusePortSocket:
    """The supervisor's socket for ``host:port`` (port 0: a free port, the same for all
    workers). Raises OSError if the address cannot be bound, or if another server
    already listens there: SO_REUSEPORT alone would let a second ``reserve serve`` of
    the same user share the port and take half of the connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port != 0:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))  # refused while anything listens on the port
    return reuseport_socket(family, (host, port))
