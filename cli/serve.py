"""``reserve serve``: the HTTP service, in one process or several (issue #11).

With ``--workers N`` (or ``RESERVE_WORKERS``) uvicorn's supervisor starts N worker
processes on one socket and restarts any that dies; each builds its own Services through
``api.worker:app_from_env``. Appends from all workers are serialised by PostgreSQL's
advisory transaction lock (``ledger.store.log``), each worker group-commits its own
callers, and every append transaction signs its checkpoint before it commits, so an
acknowledged entry is always inside a signed checkpoint. SQLite has a single writer and
is refused for more than one worker (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default RESERVE_WORKERS or 1; more than 1 needs PostgreSQL)",
    )


def _metrics_dir() -> Path:
    """PROMETHEUS_MULTIPROC_DIR for the workers, emptied at start: files left by an
    earlier run would be summed into this one's counters."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="reserve-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.is_file() and child.suffix == ".db":
            child.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def _say_when_listening(host: str, port: int) -> None:
    """Print where the service listens once it accepts connections (a newcomer running
    ``make run`` is told where to go; uvicorn's own log lines are off)."""

    def wait() -> None:
        for _ in range(600):  # at most a minute
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            return
        shown = f"[{host}]" if ":" in host else host
        print(f"reserve: listening on http://{shown}:{port} (OpenAPI at /docs)", flush=True)

    threading.Thread(target=wait, name="say-listening", daemon=True).start()


@contextlib.contextmanager
def _witness_feeder(svc: Any) -> Iterator[None]:
    """Send new checkpoints to the log's witnesses while the service runs (issue #10)."""
    from cli.witness import start_feeder

    feeder = start_feeder(svc.ledger.engine)
    try:
        yield
    finally:
        feeder.stop()


def _run_workers(workers: int, host: str, port: int, common: dict[str, Any]) -> None:
    """uvicorn's supervisor (restarts a worker that dies), each worker listening on a
    socket of its own so the kernel spreads connections over them (cli.serve_socket)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from cli.serve_socket import bind_for_workers, supports_reuseport
    from ledger.errors import ConfigError

    if not supports_reuseport():  # not Linux/BSD: uvicorn's one shared socket
        uvicorn.run("api.worker:app_from_env", factory=True, workers=workers, **common)
        return
    config = uvicorn.Config("api.worker:app_from_env", factory=True, workers=workers, **common)
    try:
        sock = bind_for_workers(host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


def run(args: argparse.Namespace, configure_logging: Any) -> int:
    import uvicorn

    from api.config import load_api_settings
    from api.services import build_services
    from keys import PASSPHRASE_ENV, passphrase_from_env_or_prompt

    settings = load_api_settings(workers=args.workers)  # every problem, one line each
    if not os.environ.get("RESERVE_LOG_LEVEL"):
        configure_logging("info", settings.ledger.log_format)  # a service logs its requests
    asked: list[bytes] = []

    def passphrase() -> bytes:  # only the file keystore asks, and only once
        if not asked:
            asked.append(passphrase_from_env_or_prompt(env=os.environ, prompt=True))
        return asked[0]

    svc = build_services(settings, passphrase=passphrase)  # checks the passphrase and the log
    if svc.issuer is not None and args.print_tokens:
        users = {k.user for k in svc.ledger.registered_keys() if k.user != "log" and k.revoked_seq is None}
        for user in sorted(users):
            print(f"  {user:<10} reserve token --user {user}")
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_config": None,
        "access_log": False,
        # X-Forwarded-For only from RESERVE_TRUSTED_PROXIES, applied by the app itself.
        "proxy_headers": False,
    }
    if settings.workers == 1:
        from api.app import create_app, freeze_startup_heap

        with _witness_feeder(svc):
            _say_when_listening(args.host, args.port)
            app = create_app(svc)
            freeze_startup_heap()
            uvicorn.run(app, **common)
        return 0
    svc.close()  # each worker builds its own; nothing with a socket crosses the fork
    metrics_dir = _metrics_dir()
    os.environ["RESERVE_WORKERS"] = str(settings.workers)
    if asked and PASSPHRASE_ENV not in os.environ:
        # Prompted once here; the workers read it from their environment (readable only
        # by this user). Production sets it from a credential file instead.
        os.environ[PASSPHRASE_ENV] = asked[0].decode()
    import structlog

    structlog.get_logger("reserve.serve").info(
        "serve_workers", workers=settings.workers, port=args.port
    )
    try:
        # One feeder for all workers, in the supervisor: the witnesses see each new
        # checkpoint once (issue #10).
        with _witness_feeder(svc):
            _say_when_listening(args.host, args.port)
            _run_workers(settings.workers, args.host, args.port, common)
    finally:
        if metrics_dir.name.startswith("reserve-metrics-"):  # ours, not an operator's
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
