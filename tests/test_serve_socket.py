"""``reserve serve --workers N``: each worker listens on a socket of its own on the same
address, so the kernel spreads clients over the workers (issue #11: with uvicorn's one
shared socket, 50 of 50 benchmark connections landed in one worker)."""

from __future__ import annotations

import pickle
import selectors
import socket
import time
from multiprocessing.reduction import ForkingPickler

import pytest

from cli.serve_socket import ReusePortSocket, bind_for_workers, supports_reuseport

pytestmark = pytest.mark.skipif(not supports_reuseport(), reason="SO_REUSEPORT is Linux/BSD")


def _as_a_worker_gets_it(sock: socket.socket) -> socket.socket:
    """What a spawned worker receives: uvicorn hands its sockets over with
    multiprocessing's pickler."""
    got = pickle.loads(ForkingPickler.dumps(sock))
    assert isinstance(got, socket.socket)
    return got


def test_each_worker_gets_its_own_socket_on_the_supervisors_address() -> None:
    parent = bind_for_workers("127.0.0.1", 0)
    workers = [_as_a_worker_gets_it(parent) for _ in range(2)]
    try:
        assert isinstance(parent, ReusePortSocket)
        assert {w.getsockname() for w in workers} == {parent.getsockname()}
        assert len({parent.fileno(), *(w.fileno() for w in workers)}) == 3
        for w in workers:
            assert w.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    finally:
        for s in (parent, *workers):
            s.close()


def test_connections_are_spread_over_the_workers_sockets() -> None:
    """50 clients connecting together reach both listening sockets; the supervisor's own
    socket (bound, not listening) gets none."""
    parent = bind_for_workers("127.0.0.1", 0)
    workers = [_as_a_worker_gets_it(parent) for _ in range(2)]
    clients: list[socket.socket] = []
    accepted = [0, 0]
    try:
        for w in workers:
            w.listen(128)
            w.setblocking(False)
        clients = [socket.create_connection(parent.getsockname()[:2]) for _ in range(50)]
        sel = selectors.DefaultSelector()
        for i, w in enumerate(workers):
            sel.register(w, selectors.EVENT_READ, i)
        deadline = time.monotonic() + 5
        while sum(accepted) < 50 and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                while True:
                    try:
                        conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    except BlockingIOError:
                        break
                    conn.close()
                    accepted[key.data] += 1
        sel.close()
        assert sum(accepted) == 50
        # Spread by a hash of the client's port: both get a share (all 50 in one: 2^-49).
        assert min(accepted) >= 5, accepted
    finally:
        for s in (parent, *workers, *clients):
            s.close()


def test_a_port_another_server_listens_on_is_refused() -> None:
    """SO_REUSEPORT must not let a second ``reserve serve`` share a busy port."""
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(1)
    try:
        with pytest.raises(OSError):
            bind_for_workers("127.0.0.1", other.getsockname()[1])
    finally:
        other.close()
    # Nor a running one of ours (its workers listen with SO_REUSEPORT).
    parent = bind_for_workers("127.0.0.1", 0)
    worker = _as_a_worker_gets_it(parent)
    worker.listen(1)
    try:
        with pytest.raises(OSError):
            bind_for_workers("127.0.0.1", parent.getsockname()[1])
    finally:
        worker.close()
        parent.close()
